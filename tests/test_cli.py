"""What a stage prints: TensorFlow's start-up notices left out, everything else kept; memory
running out is one line and exit code 2."""

import subprocess
import sys

from vae_tf.cli import without_startup_notices

# As TensorFlow 2.21 writes them on this 2-core machine without a GPU driver.
NOTICES = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795400131.234888   32613 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1795400131.235305   32613 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1795400131.324495   32613 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
"""
CUINIT = ("E0000 00:00:1795400157.140822   32667 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
          "Failed call to cuInit: UNKNOWN ERROR (303)\n")
OTHER = "W0000 00:00:1795400157.2   32667 op_kernel.cc:1857] OP_REQUIRES failed at xla_ops.cc:577\nTraceback: boom\n"


def test_start_up_notices_are_dropped_and_every_other_line_kept():
    assert without_startup_notices(NOTICES + CUINIT + NOTICES) == ""
    assert without_startup_notices(OTHER[:60] + "\n" + NOTICES + OTHER) == OTHER[:60] + "\n" + OTHER


def test_a_failing_cuinit_is_kept_where_a_driver_was_found():
    with_driver = "".join(line + "\n" for line in NOTICES.splitlines() if "cudart_stub" not in line)
    assert without_startup_notices(with_driver + CUINIT) == CUINIT


def test_a_stage_process_loads_tensorflow_without_notices_and_still_reports_errors():
    code = ("import sys; from vae_tf import cli; cli.import_tensorflow(); import tensorflow as tf; "
            "print(len(tf.config.list_physical_devices('CPU'))); print('own line', file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "1\n"
    assert result.stderr == "own line\n"


def test_memory_running_out_is_one_line_naming_the_settings_to_lower():
    """Settings within their bounds can still ask for more than a machine has (a wide network on
    large images with a large batch): TensorFlow's ResourceExhaustedError becomes one line."""
    code = ("import atexit, os; import tensorflow as tf; from vae_tf import cli\n"
            "atexit.register(os.abort)  # a teardown that dies by a signal, as TensorFlow's did after an OOM\n"
            "def stage(): raise tf.errors.ResourceExhaustedError(None, None, 'OOM when allocating tensor with "
            "shape[1000000,1000000]')\n"
            "cli.run(stage)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr  # the code of its own, not -6
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: out of memory (OOM when allocating tensor with shape[1000000,1000000]); the settings ask for more "
        "than this machine has: reduce model.hidden_units")
