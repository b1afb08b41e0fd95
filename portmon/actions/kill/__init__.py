"""Safe kill of a port's holders, one module per concern.

- :mod:`.signals`: the signals a kill may send, by name, and its default waits;
- :mod:`.text`: labels of ports, sockets and start times, and why a kernel-owned socket cannot be killed;
- :mod:`.identity`: which process is which: start times in clock ticks since boot, pidfds held from plan to signal;
- :mod:`.model`: the plan, its targets and refusals, per-target results and the verdict (values only);
- :mod:`.process`: reading a process fresh from the OS: kernel threads, portmon's own ancestry, permission;
- :mod:`.plan`: the policy: whom a kill would signal, whom it refuses and why (``plan_kill``);
- :mod:`.confirmed`: a plan cut down to the processes a user confirmed by (pid, start ticks) (remote kills);
- :mod:`.execute`: identity-checked handles (pidfd where there is one), signalling and waiting;
- :mod:`.judge`: the verdict from the re-scan: freed, TIME_WAIT only, still held, or re-bound by a new pid.

Nothing is imported here: the one-shot CLI loads only the modules it needs, when it needs them
(``kill --help`` must not pay for psutil).
"""
