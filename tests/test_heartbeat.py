"""`vae_tf.heartbeat`: a long step is not silent, and a stage that speaks is not interrupted."""

import time

from vae_tf.heartbeat import Heartbeat


def test_a_silent_block_gets_lines_with_its_status_and_one_that_speaks_gets_none(capsys):
    with Heartbeat(lambda: "evaluating images 1-100 of 10000", every_seconds=0.1):
        time.sleep(0.6)
    lines = capsys.readouterr().out.splitlines()
    assert 2 <= len(lines) <= 6, lines  # one about every 0.1 s of the 0.6
    assert all(line.startswith("evaluating images 1-100 of 10000 (") and line.endswith(" s so far)")
               for line in lines), lines
    with Heartbeat(lambda: "training", every_seconds=0.2) as heartbeat:
        for _ in range(30):
            time.sleep(0.02)
            heartbeat.said()
    assert capsys.readouterr().out == ""
