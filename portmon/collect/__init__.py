"""Reading sockets: the Collector protocol and one module per source (procfs/netlink, psutil, fd walk, fake)."""
