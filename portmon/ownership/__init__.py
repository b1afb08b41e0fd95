"""Who really holds a port: process families, the managers above a process, and network namespaces."""
