"""MemberOutput: a member's file read as it grows, whole lines only, each parsed once."""
from tests.cluster.kafka.member_output import MemberOutput


def test_lines_are_read_as_the_file_grows_and_a_partial_line_waits_for_its_newline(tmp_path):
    path = tmp_path / "member.txt"
    path.write_bytes(b"0 10 m1\n2 7 m")           # the second line is being written
    output = MemberOutput(path)
    assert output.records() == [(0, 10, "m1")]
    with open(path, "ab") as f:
        f.write(b"12\n1 3 m5\n")
    assert output.records() == [(0, 10, "m1"), (2, 7, "m12"), (1, 3, "m5")]
    assert output.records() == [(0, 10, "m1"), (2, 7, "m12"), (1, 3, "m5")]
