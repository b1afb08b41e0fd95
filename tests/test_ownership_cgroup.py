"""Managers read from /proc/PID/cgroup text: every manager kind, cgroup v2 and the v1 ``name=systemd`` line."""

from __future__ import annotations

import pytest

from portmon.ownership import manager as mk
from portmon.ownership.cgroup import cgroup_path, parse_cgroup, read_cgroup

CID = "3f4e8c2a9b1d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"
POD = "8e1c7f0a-2b3d-4c5e-9f60-718293a4b5c6"

V1_TAIL = "11:memory:/\n10:cpu,cpuacct:/\n1:pids:/\n"


def v1(named: str, others: str = V1_TAIL) -> str:
    """A v1 host's file: controller lines and the ``name=systemd`` line (no unified line)."""
    return f"12:name=systemd:{named}\n{others}"


def hybrid(path: str) -> str:
    """A hybrid host: v1 controllers, ``name=systemd`` and the unified ``0::`` line with the same path."""
    return f"12:name=systemd:{path}\n11:memory:{path}\n0::{path}\n"


def v2(path: str) -> str:
    return f"0::{path}\n"


def kinds(text: str) -> list[tuple[str, str]]:
    return [(m.kind, m.name) for m in parse_cgroup(text)]


@pytest.mark.parametrize("wrap", [v2, v1, hybrid], ids=["v2", "v1", "hybrid"])
class TestEveryKind:
    def test_system_unit(self, wrap) -> None:
        ms = parse_cgroup(wrap("/system.slice/nginx.service"))
        assert [(m.kind, m.name, m.stop) for m in ms] == [
            (mk.SYSTEMD_UNIT, "nginx.service", "systemctl stop nginx.service")
        ]

    def test_templated_unit_in_a_sub_slice(self, wrap) -> None:
        path = "/system.slice/system-getty.slice/getty@tty1.service"
        assert kinds(wrap(path)) == [(mk.SYSTEMD_UNIT, "getty@tty1.service")]

    def test_delegated_subgroup_below_a_unit_is_still_the_unit(self, wrap) -> None:
        assert kinds(wrap("/system.slice/pm2-root.service/app")) == [(mk.SYSTEMD_UNIT, "pm2-root.service")]

    def test_dockerd_itself_is_a_unit_not_a_container(self, wrap) -> None:
        assert kinds(wrap("/system.slice/docker.service")) == [(mk.SYSTEMD_UNIT, "docker.service")]
        assert kinds(wrap("/system.slice/docker-proxy.service")) == [(mk.SYSTEMD_UNIT, "docker-proxy.service")]

    def test_user_unit(self, wrap) -> None:
        ms = parse_cgroup(wrap("/user.slice/user-1000.slice/user@1000.service/app.slice/devserver.service"))
        assert [(m.kind, m.name, m.detail("uid"), m.stop) for m in ms] == [
            (mk.SYSTEMD_USER_UNIT, "devserver.service", "1000", "systemctl --user stop devserver.service")
        ]

    def test_the_user_manager_itself_is_no_unit(self, wrap) -> None:
        assert kinds(wrap("/user.slice/user-1000.slice/user@1000.service/init.scope")) == []

    def test_session_scope(self, wrap) -> None:
        ms = parse_cgroup(wrap("/user.slice/user-1000.slice/session-3.scope"))
        assert [(m.kind, m.restart, m.stop) for m in ms] == [(mk.SESSION, mk.RESTART_NO, None)]

    def test_docker_systemd_driver(self, wrap) -> None:
        ms = parse_cgroup(wrap(f"/system.slice/docker-{CID}.scope"))
        assert [(m.kind, m.name, m.detail("id"), m.stop) for m in ms] == [
            (mk.DOCKER, CID[:12], CID, f"docker stop {CID[:12]}")
        ]

    def test_docker_cgroupfs_driver(self, wrap) -> None:
        assert kinds(wrap(f"/docker/{CID}")) == [(mk.DOCKER, CID[:12])]

    def test_systemd_inside_a_container_is_the_containers_business(self, wrap) -> None:
        assert kinds(wrap(f"/system.slice/docker-{CID}.scope/system.slice/nginx.service")) == [(mk.DOCKER, CID[:12])]

    def test_podman_rootful_and_rootless(self, wrap) -> None:
        assert kinds(wrap(f"/machine.slice/libpod-{CID}.scope/container")) == [(mk.PODMAN, CID[:12])]
        rootless = f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope/container"
        assert kinds(wrap(rootless)) == [(mk.PODMAN, CID[:12])]

    def test_podman_conmon_is_not_the_container(self, wrap) -> None:
        assert kinds(wrap(f"/machine.slice/libpod-conmon-{CID}.scope")) == []

    def test_containerd_and_nerdctl(self, wrap) -> None:
        assert kinds(wrap(f"/system.slice/cri-containerd-{CID}.scope")) == [(mk.CONTAINERD, CID[:12])]
        assert kinds(wrap(f"/nerdctl.slice/nerdctl-{CID}.scope")) == [(mk.CONTAINERD, CID[:12])]

    def test_crio(self, wrap) -> None:
        assert kinds(wrap(f"/machine.slice/crio-{CID}.scope")) == [(mk.CRIO, CID[:12])]
        assert kinds(wrap(f"/machine.slice/crio-conmon-{CID}.scope")) == []

    def test_kubernetes_systemd_driver(self, wrap) -> None:
        uid = POD.replace("-", "_")
        path = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{CID}.scope"
        ms = parse_cgroup(wrap(path))
        assert [(m.kind, m.name) for m in ms] == [(mk.CONTAINERD, CID[:12]), (mk.KUBERNETES, POD)]
        assert ms[1].restart == mk.RESTART_LIKELY

    def test_kubernetes_guaranteed_pod_with_crio(self, wrap) -> None:
        uid = POD.replace("-", "_")
        assert kinds(wrap(f"/kubepods.slice/kubepods-pod{uid}.slice/crio-{CID}.scope")) == [
            (mk.CRIO, CID[:12]), (mk.KUBERNETES, POD)
        ]

    def test_kubernetes_cgroupfs_driver(self, wrap) -> None:
        assert kinds(wrap(f"/kubepods/burstable/pod{POD}/{CID}")) == [(mk.CONTAINER, CID[:12]), (mk.KUBERNETES, POD)]

    def test_lxc(self, wrap) -> None:
        assert kinds(wrap("/lxc.payload.web1/system.slice/nginx.service")) == [(mk.LXC, "web1")]
        assert kinds(wrap("/lxc/web1")) == [(mk.LXC, "web1")]
        assert kinds(wrap("/lxc.monitor.web1")) == []
        assert parse_cgroup(wrap("/lxc.payload.web1"))[0].stop == "lxc-stop -n web1"

    def test_nspawn_machine(self, wrap) -> None:
        ms = parse_cgroup(wrap("/machine.slice/systemd-nspawn@build\\x2dbox.service/payload/system.slice/x.service"))
        assert [(m.kind, m.name, m.stop) for m in ms] == [(mk.NSPAWN, "build-box", "machinectl poweroff build-box")]
        assert kinds(wrap("/machine.slice/machine-build\\x2dbox.scope/payload")) == [(mk.NSPAWN, "build-box")]

    def test_root_and_init(self, wrap) -> None:
        assert kinds(wrap("/")) == []
        assert kinds(wrap("/init.scope")) == []


def test_v1_cgroupfs_container_found_on_a_controller_line() -> None:
    # Old Docker with the cgroupfs driver on a v1 host: name=systemd says the session, controllers the container.
    text = f"12:name=systemd:/docker/{CID}\n4:memory:/docker/{CID}\n"
    assert kinds(text) == [(mk.DOCKER, CID[:12])]
    text = f"12:name=systemd:/\n4:memory:/docker/{CID}\n3:cpu:/docker/{CID}\n"
    assert kinds(text) == [(mk.DOCKER, CID[:12])]


def test_unrelated_v1_controller_paths_are_not_managers() -> None:
    # This very test host's kind of file: a memory path set by a sandbox, nothing else.
    text = "9:name=systemd:/\n4:memory:/process_api/a6fe4cbb24ae7ee589c9f9e81f347771\n0::/\n"
    assert kinds(text) == []
    assert cgroup_path(text) == "/"


def test_substrings_never_match() -> None:
    assert kinds(v2("/system.slice/my-docker-thing.service")) == [(mk.SYSTEMD_UNIT, "my-docker-thing.service")]
    assert kinds(v2(f"/system.slice/notdocker-{CID}.scope")) == [(mk.SYSTEMD_UNIT, f"notdocker-{CID}.scope")]
    assert kinds(v2("/docker/not-a-hex-id")) == []
    assert kinds(v2("/apps/pod" + POD)) == []  # a pod directory only counts below kubepods


def test_garbage_is_no_manager() -> None:
    assert kinds("") == []
    assert kinds("not a cgroup file\n\x1b[31m\n") == []


def test_read_cgroup_of_this_process_parses() -> None:
    import os

    text = read_cgroup(os.getpid())
    assert text is not None and text.strip()
    parse_cgroup(text)  # whatever this host is, it parses
    assert read_cgroup(2**22 + 7) is None
