"""Provision and teardown through the real openstacksdk against the local OpenStack simulator.

Servers are real lab hosts (no Flink here): the playbooks reach them over SSH with the keypair
they created, and with host keys pinned from the servers' console logs (StrictHostKeyChecking=yes,
never accept-new). The end-to-end run with Flink is in test_openstack_e2e.py.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import yaml
from support import one_line
from support.os_sim import Simulator

from khaos_controller import REPO_ROOT
from khaos_controller.errors import KhaosError
from khaos_controller.infra import ansible, openstack_keys
from khaos_controller.infra import openstack as kos

pytestmark = pytest.mark.lab


def sim_inventory(sim: Simulator, d, cluster: str, taskmanagers: int = 1, extra: dict | None = None):
    """clouds.yaml, a key pair and an inventory of the khaos_openstack plugin in d; returns the inventory."""
    (d / "group_vars").mkdir(parents=True, exist_ok=True)
    sim.clouds_yaml(d / "clouds.yaml")
    if not (d / "id_ed25519").exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "id_ed25519")], check=True)
    inv = d / f"{cluster}.openstack.yml"
    inv.write_text(
        yaml.safe_dump(
            {
                "plugin": "khaos_openstack",
                "cloud": "sim",
                "clouds_yaml": "clouds.yaml",
                "cluster": cluster,
                "known_hosts": str(d / "known_hosts"),
            }
        )
    )
    lab = sim.cloud.lab
    gv = yaml.safe_load((REPO_ROOT / "inventories" / "local" / "group_vars" / "all.yml").read_text())
    gv |= {
        "openstack_image": "debian-12",
        "openstack_flavor": "m1.small",
        "openstack_network": "private",
        "openstack_taskmanagers": taskmanagers,
        "openstack_ssh_cidr": f"{lab.gateway}/32",
        "openstack_public_key_file": str(d / "id_ed25519.pub"),
        "openstack_timeout": 60,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(d / "id_ed25519"),
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_remote_tmp": "/tmp/.ansible/tmp",
        "khaos_shared_dir": str(lab.shared_dir),
        "khaos_state_dir": str(d / "state"),
        "flink_checkpoint_dir": f"file://{lab.shared_dir}/checkpoints",
        "flink_savepoint_dir": f"file://{lab.shared_dir}/savepoints",
    } | (extra or {})
    (d / "group_vars" / "all.yml").write_text(yaml.safe_dump(gv))
    return inv


def known_hosts(d) -> dict[str, str]:
    """The pinned host keys of the inventory's known_hosts: {address: "type base64"}."""
    path = d / "known_hosts"
    lines = [ln.split() for ln in path.read_text().splitlines()] if path.exists() else []
    return {addr: f"{kind} {key}" for hosts, kind, key, *_ in lines for addr in hosts.split(",")}


def server(sim: Simulator, name: str) -> dict:
    return next(s for s in sim.cloud.servers.values() if s["name"] == name)


def address(s: dict) -> str:
    return next(a["addr"] for a in s["addresses"]["private"] if a["OS-EXT-IPS:type"] == "fixed")


def consoles_read(sim: Simulator, since: int = 0) -> int:
    return sum(r["action"] == "os-getConsoleOutput" for r in sim.cloud.log[since:])


def no_leftovers(sim: Simulator) -> None:
    assert sim.cloud.leftovers() == {k: [] for k in sim.cloud.leftovers()}, sim.cloud.leftovers()


@pytest.fixture(scope="module")
def sim():
    s = Simulator("tos")
    try:
        yield s
    finally:
        s.close()


def test_provision_twice_ping_inventory_teardown(sim, tmp_path):
    inv = sim_inventory(sim, tmp_path, "c1", taskmanagers=2)
    first = ansible.run_playbook("provision", inv, base_dir=tmp_path)
    assert first.data["openstack_created"] == [
        "keypair khaos-c1",
        "security group khaos-c1",
        "server group khaos-c1",
        "server khaos-c1-jm-1",
        "server khaos-c1-tm-1",
        "server khaos-c1-tm-2",
    ]
    assert len(sim.cloud.lab.hosts) == 3
    [group] = sim.cloud.server_groups.values()
    assert group["policy"] == "anti-affinity" and len(group["members"]) == 3
    [sg] = [g for g in sim.cloud.security_groups.values()]
    ingress = {
        (r["port_range_min"], r["port_range_max"], r["remote_ip_prefix"], r["remote_group_id"])
        for r in sg["security_group_rules"]
        if r["direction"] == "ingress"
    }
    bastion = f"{sim.cloud.lab.gateway}/32"
    assert ingress == {(22, 22, bastion, None), (8081, 8081, bastion, None), (1, 65535, None, sg["id"])}
    assert {s["metadata"]["khaos_role"] for s in sim.cloud.servers.values()} == {"jobmanager", "taskmanager"}
    assert all(s["tags"] == ["khaos", "khaos_cluster=c1"] for s in sim.cloud.servers.values())
    # (a) before any SSH, every server's host key is pinned from its console log: the key its sshd has
    assert known_hosts(tmp_path) == {address(s): sim.cloud.host_key(s) for s in sim.cloud.servers.values()}
    assert sorted(first.data["openstack_pinned"]) == sorted(s["name"] for s in sim.cloud.servers.values())
    assert consoles_read(sim) == 3
    n = len(sim.cloud.log)

    again = ansible.run_playbook("provision", inv, base_dir=tmp_path)
    assert again.data["openstack_created"] == [] and again.changed() == 0
    assert writes(sim, n) == []  # a second run only reads (pinned keys are not read again either)

    listed = ansible.inventory_list(inv)  # what the profiler reads, too
    assert listed["flink_jobmanager"]["hosts"] == ["khaos-c1-jm-1"]
    assert sorted(listed["flink_taskmanager"]["hosts"]) == ["khaos-c1-tm-1", "khaos-c1-tm-2"]
    jm = next(s for s in sim.cloud.servers.values() if s["name"] == "khaos-c1-jm-1")
    assert listed["_meta"]["hostvars"]["khaos-c1-jm-1"]["ansible_host"] == jm["addresses"]["private"][0]["addr"]
    for host in ("khaos-c1-jm-1", "khaos-c1-tm-1"):
        hostvars = listed["_meta"]["hostvars"][host]
        ssh_args = hostvars["ansible_ssh_common_args"]
        assert "StrictHostKeyChecking=yes" in ssh_args and "accept-new" not in ssh_args, ssh_args
        assert hostvars["ansible_host_key_checking"] is True  # ansible-runner's default (False) loses
    assert ansible.ping(inv, "flink", base_dir=tmp_path) == {
        "khaos-c1-jm-1": True,
        "khaos-c1-tm-1": True,
        "khaos-c1-tm-2": True,
    }

    gone = ansible.run_playbook("teardown", inv, base_dir=tmp_path)
    assert len(gone.data["openstack_deleted"]) == 6
    no_leftovers(sim)
    assert known_hosts(tmp_path) == {}  # the deleted servers' keys are forgotten
    assert all("openstacksdk/" in r["agent"] for r in sim.cloud.log)


def writes(sim: Simulator, since: int) -> list[str]:
    return [
        f"{r['method']} {r['path']}" + (f" {r['action']}" if r["action"] else "")
        for r in sim.cloud.log[since:]
        if r["method"] in ("POST", "PUT", "DELETE") and not r["path"].endswith("/auth/tokens")
    ]


def test_half_failed_provision_is_torn_down(sim, tmp_path):
    inv = sim_inventory(sim, tmp_path, "c2", taskmanagers=3)
    sim.cloud.quota_instances = 2
    try:
        with pytest.raises(KhaosError) as e:
            ansible.run_playbook("provision", inv, base_dir=tmp_path)
    finally:
        sim.cloud.quota_instances = 10
    assert "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances" in one_line(e.value)
    assert len(sim.cloud.servers) == 2 and sim.cloud.keypairs and sim.cloud.ports
    ansible.run_playbook("teardown", inv, base_dir=tmp_path)
    no_leftovers(sim)


@pytest.fixture
def spec(tmp_path):
    return kos.ClusterSpec(
        name="bad",
        image="debian-12",
        flavor="m1.small",
        network="private",
        public_key="ssh-ed25519 AAAA test",
        ssh_cidr="10.0.0.1/32",
    )


@pytest.mark.parametrize("field, value", [("image", "ubuntu-99"), ("flavor", "m9.huge"), ("network", "nowhere")])
def test_unknown_image_flavor_network(sim, tmp_path, spec, field, value):
    sim.clouds_yaml(tmp_path / "clouds.yaml")
    conn = kos.connect("sim", str(tmp_path / "clouds.yaml"))
    n = len(sim.cloud.log)
    setattr(spec, field, value)
    with pytest.raises(KhaosError) as e:
        kos.provision(conn, spec)
    assert one_line(e.value) == f"openstack: unknown {field} {value!r}"
    assert writes(sim, n) == []  # checked before anything is created


def test_missing_clouds_yaml_and_unknown_cloud(sim, tmp_path, monkeypatch):
    with pytest.raises(KhaosError) as e:
        kos.connect("sim", str(tmp_path / "nope.yaml"))
    assert one_line(e.value) == f"openstack: no clouds.yaml (looked for {tmp_path / 'nope.yaml'})"
    sim.clouds_yaml(tmp_path / "clouds.yaml")
    with pytest.raises(KhaosError) as e:
        kos.connect("elsewhere", str(tmp_path / "clouds.yaml"))
    assert "openstack: clouds.yaml: " in one_line(e.value) and "elsewhere" in str(e.value)
    monkeypatch.delenv("OS_CLOUD", raising=False)
    with pytest.raises(KhaosError, match="set OS_CLOUD"):
        kos.connect(None, str(tmp_path / "clouds.yaml"))


def test_playbook_error_is_one_line(sim, tmp_path):
    """What a user sees from the playbooks: missing clouds.yaml, an unknown flavor."""
    inv = sim_inventory(sim, tmp_path, "c3", extra={"openstack_flavor": "m9.huge"})
    with pytest.raises(KhaosError) as e:
        ansible.run_playbook("provision", inv, base_dir=tmp_path)
    assert one_line(e.value).endswith("openstack: unknown flavor 'm9.huge'")
    (tmp_path / "clouds.yaml").unlink()
    proc = subprocess.run(
        [
            str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(inv),
            str(REPO_ROOT / "playbooks" / "provision.yml"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert proc.returncode != 0
    assert "khaos_openstack: openstack: no clouds.yaml (looked for" in proc.stdout + proc.stderr
    no_leftovers(sim)


def test_server_actions_keep_the_address(sim, tmp_path):
    """stop -> start, hard reboot and replace: the host is a fresh lab host at the same address each time."""
    sim.clouds_yaml(tmp_path / "clouds.yaml")
    conn = kos.connect("sim", str(tmp_path / "clouds.yaml"))
    spec = kos.ClusterSpec(
        name="c4",
        image="debian-12",
        flavor="m1.small",
        network="private",
        public_key="ssh-ed25519 AAAA test",
        ssh_cidr="10.0.0.1/32",
        taskmanagers=1,
    )

    def console_key():  # what the API's console log says: the key of the host's current boot
        [s] = [s for s in kos.cluster_servers(conn, "c4") if s.name == tm["name"]]
        [(kind, b64)] = openstack_keys.host_keys(conn, s)
        assert f"{kind} {b64}" == sim.cloud.host_key(sim.cloud.servers[s.id])
        return b64

    try:
        [_jm, tm] = kos.provision(conn, spec)["servers"]
        keys = [console_key()]
        assert kos.server_action(conn, "c4", tm["name"], "stop")["status"] == "SHUTOFF"
        assert sim.cloud.lab.status()[1]["state"] == "down"
        assert kos.server_action(conn, "c4", tm["name"], "start")["status"] == "ACTIVE"
        keys.append(console_key())
        assert kos.server_action(conn, "c4", tm["name"], "reboot_hard")["address"] == tm["address"]
        keys.append(console_key())
        new = kos.server_action(conn, "c4", tm["name"], "replace")
        keys.append(console_key())
        assert len(set(keys)) == 4  # every fresh host has its own key, and the console says which
        assert new["id"] != tm["id"] and new["address"] == tm["address"] and new["status"] == "ACTIVE"
        assert sim.cloud.servers[new["id"]]["tags"] == ["khaos", "khaos_cluster=c4"]  # same marks as the old one
        assert [r["state"] for r in sim.cloud.lab.status()] == ["up", "up"]
        with pytest.raises(KhaosError, match="has no server 'khaos-c4-tm-9'"):
            kos.server_action(conn, "c4", "khaos-c4-tm-9", "stop")
    finally:
        kos.teardown(conn, "c4")
    no_leftovers(sim)


def test_provision_with_its_own_bastion(sim, tmp_path):
    """openstack_bastion: a bastion server with the only floating IP; Ansible reaches the cluster through it."""
    inv = sim_inventory(
        sim,
        tmp_path,
        "c6",
        extra={
            "openstack_bastion": True,
            "openstack_floating_network": "public",
            "openstack_ssh_cidr": "",
            "openstack_admin_cidr": f"{sim.cloud.lab.gateway}/32",
        },
    )
    inv.write_text(
        yaml.safe_dump(
            yaml.safe_load(inv.read_text()) | {"bastion_user": "root", "bastion_key": str(tmp_path / "id_ed25519")}
        )
    )
    first = ansible.run_playbook("provision", inv, base_dir=tmp_path)
    [fip] = [f for f in sim.cloud.floatingips.values()]
    assert first.data["openstack_created"][-1] == f"floating IP {fip['floating_ip_address']}"
    bastion = next(s for s in sim.cloud.servers.values() if s["name"] == "khaos-c6-bastion")
    assert fip["port_id"] == bastion["_port"] and bastion["_group"] is None  # not in the anti-affinity group
    rules = {
        g["name"]: {
            (r["port_range_min"], r["remote_ip_prefix"], r["remote_group_id"])
            for r in g["security_group_rules"]
            if r["direction"] == "ingress"
        }
        for g in sim.cloud.security_groups.values()
    }
    bastion_sg = next(g["id"] for g in sim.cloud.security_groups.values() if g["name"] == "khaos-c6-bastion")
    assert rules["khaos-c6-bastion"] == {(22, f"{sim.cloud.lab.gateway}/32", None)}
    assert (22, None, bastion_sg) in rules["khaos-c6"] and (8081, None, bastion_sg) in rules["khaos-c6"]
    again = ansible.run_playbook("provision", inv, base_dir=tmp_path)
    assert again.data["openstack_created"] == []
    # the bastion's floating IP is pinned from its console too: the jump checks it strictly
    assert known_hosts(tmp_path)[fip["floating_ip_address"]] == sim.cloud.host_key(bastion)
    assert ansible.ping(inv, "all", base_dir=tmp_path) == {
        "khaos-c6-bastion": True,
        "khaos-c6-jm-1": True,
        "khaos-c6-tm-1": True,
    }
    sim.cloud.lab.kill(bastion["_lab_host"])  # the cluster is reachable through the bastion only
    assert ansible.ping(inv, "flink", base_dir=tmp_path) == {"khaos-c6-jm-1": False, "khaos-c6-tm-1": False}
    gone = ansible.run_playbook("teardown", inv, base_dir=tmp_path)
    assert f"floating IP {fip['floating_ip_address']}" in gone.data["openstack_deleted"]
    no_leftovers(sim)


def test_host_keys_come_from_the_console_only(sim, tmp_path):
    """No host key is ever trusted on first use: a server whose console has no keys yet is waited for,
    then refused in one line; a replaced server is reached with the NEW key its console printed; a console
    key that is not the one sshd presents makes Ansible fail (StrictHostKeyChecking=yes)."""
    inv = sim_inventory(sim, tmp_path, "c7", extra={"openstack_host_key_timeout": 4})
    tm = "khaos-c7-tm-1"
    sim.cloud.console_faults[tm] = "hold"  # cloud-init has not printed the keys (yet)
    try:
        t0 = time.monotonic()
        with pytest.raises(KhaosError) as e:
            ansible.run_playbook("provision", inv, base_dir=tmp_path)
        assert time.monotonic() - t0 >= 4  # waited for them, bounded
        assert one_line(e.value).endswith(
            f"openstack: server {tm} printed no SSH host keys on its console log within 4 s (cloud-init prints "
            "them between -----BEGIN SSH HOST KEY KEYS----- and -----END SSH HOST KEY KEYS-----): its host key "
            "is not trusted on first use, so it cannot be reached"
        ), one_line(e.value)
        jm = server(sim, "khaos-c7-jm-1")
        assert known_hosts(tmp_path) == {address(jm): sim.cloud.host_key(jm)}
        # the inventory only warns; SSH to the unpinned server is refused and nothing is learnt from it
        assert ansible.ping(inv, "flink", base_dir=tmp_path) == {"khaos-c7-jm-1": True, tm: False}
        assert address(server(sim, tm)) not in known_hosts(tmp_path)

        del sim.cloud.console_faults[tm]  # cloud-init got there: the next run pins it (its inventory does)
        again = ansible.run_playbook("provision", inv, base_dir=tmp_path)
        assert again.data["openstack_created"] == []
        assert known_hosts(tmp_path)[address(server(sim, tm))] == sim.cloud.host_key(server(sim, tm))
        assert ansible.ping(inv, "flink", base_dir=tmp_path) == {"khaos-c7-jm-1": True, tm: True}

        # (b) replace: the NEW server's key, read from its console, is pinned; the old one is gone
        old = server(sim, tm)
        n = len(sim.cloud.log)
        chaos = {"chaos_mode": "host", "chaos_target": tm, "chaos_openstack_recovery": "replace"}
        ansible.run_playbook("inject_failure", inv, base_dir=tmp_path, tags="chaos", extravars=chaos)
        new = server(sim, tm)
        assert new["id"] != old["id"] and sim.cloud.host_key(new) != sim.cloud.host_key(old)
        assert known_hosts(tmp_path)[address(new)] == sim.cloud.host_key(new)
        assert consoles_read(sim, n) == 1  # pinned once by the chaos role; the inventory refresh trusts it
        assert ansible.ping(inv, tm, base_dir=tmp_path) == {tm: True}

        # (c) the next replacement's console prints a key its sshd does not have: Ansible refuses it
        sim.cloud.console_faults[tm] = "forge"
        with pytest.raises(KhaosError) as e:
            ansible.run_playbook(
                "inject_failure", inv, base_dir=tmp_path, extravars=chaos | {"chaos_openstack_timeout": 15}
            )
        msg = one_line(e.value)
        assert msg.startswith(f"inject_failure.yml: {tm} failed at task 'Wait until the host answers over SSH"), msg
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in msg or "Host key verification failed" in msg, msg
        forged = server(sim, tm)
        assert known_hosts(tmp_path)[address(forged)] == sim.cloud.console_key(forged) != sim.cloud.host_key(forged)
    finally:
        sim.cloud.console_faults.clear()
        ansible.run_playbook("teardown", inv, base_dir=tmp_path)
    no_leftovers(sim)
    assert known_hosts(tmp_path) == {}
