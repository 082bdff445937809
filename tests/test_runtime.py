import os
import subprocess
import sys

from twotower_utils import runtime


def test_filtered_stderr_drops_only_the_known_start_up_noise(capfd):
    noise = "2026-12-01 E external/local_xla/xla/stream_executor/cuda/cuda_platform.cc:51] failed call to cuInit: X\n"
    real = "2026-12-01 E tensorflow/core/framework/op_kernel.cc:1857] OP_REQUIRES failed: a real error\n"
    with runtime.filtered_stderr():
        os.write(2, noise.encode())
        os.write(2, real.encode())
    err = capfd.readouterr().err
    assert "cuInit" not in err and err == real


def test_a_fresh_process_starts_tensorflow_without_noise_and_with_real_errors():
    code = (
        "import twotower_utils, tensorflow as tf\n"
        "print(int(tf.constant(1) + 1))\n"
        "tf.config.list_physical_devices()\n"
        "import os; os.write(2, b'E some_file.cc:1] a real error after start-up\\n')\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop(runtime.SHOW_STARTUP_ENV, None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "2"
    assert "cuInit" not in done.stderr and "a real error after start-up" in done.stderr


def test_the_filter_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(runtime.SHOW_STARTUP_ENV, "1")
    assert runtime.quiet_device_scan() is False


def test_progress_is_quiet_when_nobody_watches(monkeypatch, capsys):
    monkeypatch.setenv(runtime.HEADLESS_ENV, "1")
    assert list(runtime.progress(range(3), desc="seeds")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_tensorflow_info_lines_are_held_back_only_inside_the_block(caplog):
    import logging

    logger = logging.getLogger("tensorflow")
    logger.setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.INFO, logger="tensorflow"):
            with runtime.tensorflow_warnings_only():
                logger.info("Assets written to: /tmp/x/assets")
                logger.warning("a real warning")
            logger.info("after the block")
        assert [r.getMessage() for r in caplog.records] == ["a real warning", "after the block"]
    finally:
        logger.setLevel(logging.NOTSET)


def test_scann_build_info_lines_are_dropped_and_its_warnings_kept(capfd):
    banner = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    info = "I0000 00:00:1796132725.842489   17658 kmeans_tree_partitioner_utils.h:90] PartitionerFactory ran in 10ms.\n"
    warning = "W0000 00:00:1796132725.619205   17658 gmm_utils.cc:1026] Could not normalize centroid due to zero norm\n"
    with runtime.filtered_stderr(runtime.SCANN_INFO):
        for line in (banner, info, warning):
            os.write(2, line.encode())
    assert capfd.readouterr().err == warning


def test_xla_first_compilation_line_is_noise_and_real_lines_are_not():
    from twotower_utils.runtime import XLA_INFO, is_noise

    line = "I0000 00:00:1796137865.750891   14035 device_compiler.h:196] Compiled cluster using XLA!  This line is"
    assert is_noise(line, XLA_INFO)
    assert not is_noise("E0000 00:00:1.5 14035 device_compiler.h:196] compilation failed", XLA_INFO)


def test_the_tf_data_rewrite_line_is_noise_and_real_errors_are_not():
    from twotower_utils.runtime import TFDATA_REWRITE, is_noise

    line = (
        "2026-12-04 19:16:42.708295: E tensorflow/core/framework/node_def_util.cc:680] NodeDef mentions attribute "
        "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset; ...>"
    )
    assert is_noise(line, TFDATA_REWRITE)
    assert not is_noise(
        "E tensorflow/core/framework/node_def_util.cc:680] NodeDef mentions attribute x", TFDATA_REWRITE
    )
    assert not is_noise("E tensorflow/core/kernels/data/map.cc:1] an error", TFDATA_REWRITE)
