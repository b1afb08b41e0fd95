"""The listener child process the kill tests start and signal (shared by test_killer and test_killcmd)."""

# Options: port=N, proto=udp, fork=N (children share the socket), ignore-term, record=PATH
# (TERM/INT/HUP are written there, then the process exits); any other word is ignored (it only
# shows up in the command line). It prints "READY <port> <pid,pid,...>" once listening.
CHILD = r"""
import os, signal, socket, sys, time
opts = dict(a.split("=", 1) if "=" in a else (a, "1") for a in sys.argv[1:])
record = opts.get("record")
def note(sig, frame):
    with open(record, "a") as fh:
        fh.write(signal.Signals(sig).name + "\n")
    os._exit(0)
if "ignore-term" in opts:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif record:
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, note)
udp = opts.get("proto") == "udp"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(opts.get("port", "0"))))
except OSError as exc:
    print("ERR", exc, flush=True)
    sys.exit(3)
if not udp:
    s.listen()
pids = [os.getpid()]
for _ in range(int(opts.get("fork", "0"))):
    pid = os.fork()
    if pid == 0:
        pids = None
        break
    pids.append(pid)
if pids is not None:
    print("READY", s.getsockname()[1], ",".join(map(str, pids)), flush=True)
end = time.monotonic() + 60
while time.monotonic() < end:
    time.sleep(0.1)
"""
