"""Acting on and explaining a port: kill (plan, execute, judge) and why (test binds)."""
