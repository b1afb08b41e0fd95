"""Managers in the parent chain and the environment, with real process trees where the machine allows."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from ownership_procs import Tree, ready_pids, restart_loop, start_prefork

from portmon.ownership import manager as mk
from portmon.ownership.env import environ_managers
from portmon.ownership.parents import chain_managers, classify, read_script, script_path, shell_script
from portmon.ownership.preflight import predict, preflight
from portmon.ownership.proc import ProcInfo, parent_chain, read_stat
from portmon.ownership.resolve import combine, managers_of

BASH = shutil.which("bash")


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize("delay", ["0.05", "1"])
def test_bash_restart_loop_is_found_and_predicted(tmp_path: Path, child_script: Path, trees: list[Tree],
                                                  delay: str) -> None:
    tree, _, pid = restart_loop(tmp_path, child_script, trees, delay)
    ms = managers_of(pid)
    found = (ms[0].kind, ms[0].name, ms[0].pid, ms[0].restart)
    assert found == (mk.SHELL, "bash loop", tree.proc.pid, mk.RESTART_LIKELY)
    pre = predict(ms, {pid})
    assert pre.restart_expected
    assert pre.message.startswith(f"supervised by bash loop (pid {tree.proc.pid}): it will probably restart")
    assert pre.stop_command == f"kill {tree.proc.pid}"
    # And the loop really brings it back: the next listener is under the same loop.
    os.kill(pid, signal.SIGTERM)
    (again,) = ready_pids(tree.proc)
    assert again != pid
    assert managers_of(again)[0].pid == tree.proc.pid


def test_sh_c_loop_and_a_plain_script(tmp_path: Path, child_script: Path, trees: list[Tree]) -> None:
    loop = Tree(["sh", "-c", f'until false; do "{sys.executable}" "{child_script}"; sleep 0.05; done'])
    trees.append(loop)
    (pid,) = ready_pids(loop.proc)
    first = managers_of(pid)[0]
    assert (first.kind, first.name, first.pid) == (mk.SHELL, "sh loop", loop.proc.pid)

    once = tmp_path / "once.sh"
    once.write_text(f'echo starting >&2\n"{sys.executable}" "{child_script}"\n')
    plain = Tree(["sh", str(once)])
    trees.append(plain)
    (pid2,) = ready_pids(plain.proc)
    # Not first: a script without a loop steps aside for whatever runs above the test.
    first = next(m for m in managers_of(pid2) if m.pid == plain.proc.pid)
    assert (first.kind, first.name, first.restart, first.stop) == (mk.SHELL, "sh script", mk.RESTART_NO, None)
    pre = predict((first,), {pid2})
    expected = f"started by sh script (pid {plain.proc.pid}), which has no loop: nothing should start it again"
    assert pre.message == expected
    assert not pre.restart_expected


def test_fake_supervisord_parent_and_its_environment(tmp_path: Path, child_script: Path, trees: list[Tree]) -> None:
    # A process whose name is supervisord (python under that name) starts the listener with the
    # variables supervisord sets: the two findings merge into one manager with the supervisor's pid.
    exe = tmp_path / "supervisord"
    exe.symlink_to(sys.executable)
    code = f"import subprocess, sys; subprocess.run([sys.executable, {str(child_script)!r}])"
    tree = Tree([str(exe), "-c", code], env={"SUPERVISOR_PROCESS_NAME": "web_0", "SUPERVISOR_GROUP_NAME": "web",
                                               "SUPERVISOR_ENABLED": "1"})
    trees.append(tree)
    (pid,) = ready_pids(tree.proc)
    ms = managers_of(pid)
    sup = ms[0]
    assert (sup.kind, sup.name, sup.pid, sup.source) == (mk.SUPERVISORD, "web:web_0", tree.proc.pid, "environ+parents")
    assert sup.stop == "supervisorctl stop web:web_0"
    pre = preflight([pid])
    expected = f"supervised by supervisord web:web_0 (pid {tree.proc.pid}): it will probably restart"
    assert pre.message.startswith(expected)
    assert pre.stop_command == "supervisorctl stop web:web_0"


def test_pm2_environment(child_script: Path, trees: list[Tree]) -> None:
    tree = Tree([sys.executable, str(child_script)], env={"pm_id": "3", "name": "api", "PM2_HOME": "/root/.pm2"})
    trees.append(tree)
    (pid,) = ready_pids(tree.proc)
    pm2 = managers_of(pid)[0]
    assert (pm2.kind, pm2.name, pm2.stop, pm2.detail("pm_id")) == (mk.PM2, "api", "pm2 stop api", "3")
    assert preflight([pid]).message.startswith("supervised by pm2 api: it will restart it: stop it there instead")




def test_gunicorn_master_restarts_workers_but_not_itself(tmp_path: Path, trees: list[Tree]) -> None:
    _, master, workers = start_prefork(tmp_path, trees, "gunicorn", "app:wsgi")
    ms = managers_of(workers[0])
    assert (ms[0].kind, ms[0].pid) == (mk.GUNICORN, master)
    expected = f"a worker of gunicorn master (pid {master}): the master starts a new one"
    assert predict(ms, {workers[0]}).message.startswith(expected)
    # Killing the whole family: the master is signalled too, so it restarts nothing.
    everyone = predict(ms, {master, *workers})
    assert everyone.manager is None or everyone.manager.kind != mk.GUNICORN


def test_the_chain_of_this_process_reaches_pid_1() -> None:
    chain = parent_chain(os.getpid())
    assert chain and chain[0].pid == os.getppid()
    assert chain[-1].pid == 1 or len(chain) == 64 or read_stat(chain[-1].ppid) is None


def info(*argv: str, name: str | None = None, pid: int = 50) -> ProcInfo:
    return ProcInfo(pid, 1, name or os.path.basename(argv[0])[:15], 1, tuple(argv))


@pytest.mark.parametrize(
    ("proc", "kind", "name", "restart"),
    [
        (info("runsv", "nginx"), mk.RUNIT, "runsv nginx", mk.RESTART_YES),
        (info("s6-supervise", "web"), mk.S6, "s6-supervise web", mk.RESTART_YES),
        (info("/sbin/tini", "--", "python"), mk.INIT, "tini", mk.RESTART_NO),
        (info("/sbin/docker-init", "--", "python"), mk.INIT, "docker-init", mk.RESTART_NO),
        (info("PM2 v5.3.0: God Daemon (/root/.pm2)", name="PM2 v5.3.0: God"), mk.PM2, "pm2", mk.RESTART_YES),
        (info("/usr/bin/python3", "/usr/local/bin/supervisord", "-n"), mk.SUPERVISORD, "supervisord",
         mk.RESTART_LIKELY),
        (info("gunicorn: master [app:wsgi]", name="gunicorn"), mk.GUNICORN, "gunicorn master", mk.RESTART_YES),
        (info("/venv/bin/python", "/venv/bin/uvicorn", "app:app", "--reload"), mk.UVICORN, "uvicorn reloader",
         mk.RESTART_ON_CHANGE),
        (info("/venv/bin/python", "-m", "uvicorn", "app:app", "--workers", "4"), mk.UVICORN, "uvicorn master",
         mk.RESTART_YES),
        (info("node", "/usr/lib/node_modules/nodemon/bin/nodemon.js", "app.js"), mk.NODEMON, "nodemon",
         mk.RESTART_ON_CHANGE),
        (info("node", "/usr/bin/nodemon", "app.js"), mk.NODEMON, "nodemon", mk.RESTART_ON_CHANGE),
        (info("watchexec", "-r", "cargo", "run"), mk.WATCHER, "watchexec", mk.RESTART_ON_CHANGE),
        (info("entr", "-r", "./serve"), mk.WATCHER, "entr", mk.RESTART_ON_CHANGE),
        (info("watch", "-n", "5", "./serve"), mk.WATCHER, "watch", mk.RESTART_YES),
        (info("-bash"), None, None, None),
        (info("bash"), None, None, None),
        (info("bash", "-i"), None, None, None),
        (info("bash", "-c", "for i in 1 2 3; do ./serve; done"), mk.SHELL, "bash loop", mk.RESTART_LIKELY),
        (info("/bin/sh", "-ec", "exec ./serve"), mk.SHELL, "sh script", mk.RESTART_NO),
        (info("sshd: alice@pts/0", name="sshd"), None, None, None),
        (info("python3", "manage.py", "runserver"), None, None, None),
    ],
)
def test_classify(proc: ProcInfo, kind: str | None, name: str | None, restart: str | None) -> None:
    m = classify(proc, script_reader=lambda path: None)
    if kind is None:
        assert m is None
    else:
        assert m is not None and (m.kind, m.name, m.restart, m.pid) == (kind, name, restart, 50)


def test_shell_script_forms() -> None:
    assert shell_script(info("bash", "-x", "serve.sh")) == ("script", "serve.sh")
    assert shell_script(info("bash", "-c", "echo")) == ("-c", "echo")
    assert shell_script(info("busybox", "sh", "run.sh")) == ("script", "run.sh")
    assert shell_script(info("zsh", "-il")) is None


def test_a_script_the_loop_cannot_be_read_from_is_only_a_script() -> None:
    m = classify(info("bash", "/nonexistent/serve.sh"), script_reader=lambda path: None)
    assert m is not None and m.name == "bash script" and m.note == "its script could not be read"
    assert (m.restart, m.stop) == (mk.RESTART_UNKNOWN, "kill 50")
    assert "it may start it again (its script could not be read)" in predict([m]).message


def test_chain_stops_at_pid_1() -> None:
    chain = (info("bash", "-c", "while :; do x; done", pid=9), ProcInfo(1, 0, "systemd", 1, ("/sbin/init",)))
    assert [m.pid for m in chain_managers(chain, script_reader=lambda p: None)] == [9]


def test_environment_variants() -> None:
    assert environ_managers({}) == ()
    (m,) = environ_managers({"SUPERVISOR_PROCESS_NAME": "worker", "SUPERVISOR_GROUP_NAME": "worker"})
    assert (m.name, m.stop) == ("worker", "supervisorctl stop worker")
    assert environ_managers({"pm_id": "x", "name": "a"}) == ()  # not a pm2 id
    assert environ_managers({"pm_id": "0"}) == ()  # pm_id alone is too weak a sign
    (m,) = environ_managers({"pm_id": "0", "pm_exec_path": "/srv/app.js"})
    assert (m.kind, m.name) == (mk.PM2, "0")


def test_combine_puts_the_app_before_its_unit_and_sessions_last() -> None:
    pm2_parent = mk.Manager(mk.PM2, "pm2", "parents", pid=77, restart=mk.RESTART_YES)
    pm2_env = environ_managers({"pm_id": "1", "name": "shop-api", "PM2_HOME": "/root/.pm2"})
    unit = mk.Manager(mk.SYSTEMD_UNIT, "pm2-root.service", "cgroup", stop="systemctl stop pm2-root.service")
    session = mk.Manager(mk.SESSION, "session-3.scope", "cgroup", restart=mk.RESTART_NO)
    tini = mk.Manager(mk.INIT, "tini", "parents", pid=5, restart=mk.RESTART_NO)
    ms = combine((tini, pm2_parent), pm2_env, (unit, session))
    assert [(m.kind, m.name, m.pid) for m in ms] == [
        (mk.PM2, "shop-api", 77), (mk.SYSTEMD_UNIT, "pm2-root.service", None),
        (mk.INIT, "tini", 5), (mk.SESSION, "session-3.scope", None),
    ]
    pre = predict(ms, {1234})
    assert pre.message.startswith("supervised by pm2 shop-api (pid 77): it will restart it: stop it there instead: "
                                  "`pm2 stop shop-api`; inside systemd unit pm2-root.service")



def test_stop_commands_quote_untrusted_names_and_split_back_exactly() -> None:
    evil = "web --all; rm -rf ~"
    (m,) = environ_managers({"SUPERVISOR_PROCESS_NAME": evil, "SUPERVISOR_GROUP_NAME": evil})
    assert m.stop == "supervisorctl stop 'web --all; rm -rf ~'"
    assert m.stop_argv == ("supervisorctl", "stop", "web --all; rm -rf ~")
    (pm2,) = environ_managers({"pm_id": "2", "name": "api", "PM2_HOME": "/root/.pm2"})
    assert pm2.stop_argv == ("pm2", "stop", "api")
    assert mk.Manager(mk.SESSION, "session-3.scope", "cgroup").stop_argv is None


def test_a_fifo_or_pipe_script_is_never_read(tmp_path: Path) -> None:
    fifo = tmp_path / "script.fifo"
    os.mkfifo(fifo)
    assert read_script(str(fifo)) is None  # returns at once: opened non-blocking, and not a regular file
    assert read_script(str(tmp_path / "missing.sh")) is None
    regular = tmp_path / "loop.sh"
    regular.write_text("while :; do x; done\n")
    assert read_script(str(regular)) == "while :; do x; done\n"
    assert script_path("/dev/fd/3", 42, "/proc") == "/proc/42/fd/3"
    assert script_path("/proc/self/fd/7", 42, "/p") == "/p/42/fd/7"
    assert script_path("/dev/stdin", 42) == "/proc/42/fd/0"
    assert script_path("/srv/run.sh", 42) == "/srv/run.sh"


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_a_loop_read_through_the_shells_own_fd(tmp_path: Path, child_script: Path, trees: list[Tree]) -> None:
    # bash /dev/fd/3 3<serve.sh: the path means the shell's fd 3, not portmon's.
    loop = tmp_path / "serve.sh"
    loop.write_text(f'while true; do\n  "{sys.executable}" "{child_script}"\n  sleep 1\ndone\n')
    tree = Tree(["sh", "-c", f'exec "{BASH}" /dev/fd/3 3<"{loop}"'])
    trees.append(tree)
    (pid,) = ready_pids(tree.proc)
    first = managers_of(pid)[0]
    assert (first.kind, first.name, first.pid) == (mk.SHELL, "bash loop", tree.proc.pid)
