"""The cluster's files: the lock a supervisor holds, cluster.json, the zookeeper file and
supervisor.log, as every command reads them."""
import logging
import os
import subprocess
import sys

import pytest

from cluster.errors import ClusterError
from cluster.supervision.files import ClusterFiles, SupervisorLog
from tests.helpers import wait_for


def test_the_lock_names_its_holder_and_refuses_a_second_one(tmp_path):
    files = ClusterFiles(tmp_path)
    assert files.running_pid() is None
    fd = files.take_lock()
    try:
        holder = subprocess.run([sys.executable, "-c", (
            "import sys; from cluster.supervision.files import ClusterFiles; "
            "print(ClusterFiles(sys.argv[1]).running_pid())"), str(tmp_path)],
            capture_output=True, text=True, timeout=60)
        assert holder.stdout.strip() == str(os.getpid()), holder.stderr
    finally:
        os.close(fd)
    assert files.running_pid() is None


def test_another_process_holding_the_lock_is_already_running(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from cluster.supervision.files import ClusterFiles; "
        "ClusterFiles(sys.argv[1]).take_lock(); print('held', flush=True); time.sleep(60)"),
        str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        files = ClusterFiles(tmp_path)
        assert files.running_pid() == holder.pid
        with pytest.raises(ClusterError, match=f"already running.*pid {holder.pid}"):
            files.take_lock()
    finally:
        holder.kill()
        holder.wait()
    wait_for(lambda: ClusterFiles(tmp_path).running_pid() is None, 10, what="the lock to go")


def test_cluster_json_is_read_back_or_says_why_not(tmp_path):
    files = ClusterFiles(tmp_path)
    assert files.try_read_state() is None
    with pytest.raises(ClusterError, match="no cluster in"):
        files.read_state()
    files.write_state({"ready": True})
    assert files.read_state() == files.try_read_state() == {"ready": True}
    files.state_file.write_text("{half")
    assert files.try_read_state() is None
    with pytest.raises(ClusterError, match="not valid JSON"):
        files.read_state()


def test_the_zookeeper_file_is_removed_only_while_it_is_ours(tmp_path):
    files = ClusterFiles(tmp_path)
    files.write_connect("h:1/a")
    files.remove_connect("h:2/b")
    assert files.connect_file.read_text().strip() == "h:1/a"
    files.remove_connect("h:1/a")
    assert not files.connect_file.exists()
    files.remove_connect("h:1/a")


def test_supervisor_log_gets_every_package_logger_and_gives_them_back(tmp_path):
    log = SupervisorLog(tmp_path / "supervisor.log")
    before = {name: logging.getLogger(name).level for name in ("broker", "clients")}
    log.attach()
    try:
        logging.getLogger("broker.server").info("from the broker package")
        logging.getLogger("clients.consumer").warning("from the clients package")
        logging.getLogger("elsewhere").warning("not ours")
    finally:
        log.detach()
    logging.getLogger("cluster.supervision").info("after detach")
    text = (tmp_path / "supervisor.log").read_text()
    assert "broker.server INFO: from the broker package" in text
    assert "clients.consumer WARNING: from the clients package" in text
    assert "not ours" not in text and "after detach" not in text
    assert {name: logging.getLogger(name).level for name in ("broker", "clients")} == before
