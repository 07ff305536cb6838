"""hpcgate-forced's decision, on the requests a client could send through sshd."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from hpcgate.files.bulk import compress_argv
from hpcgate.forced import (
    DEFAULT_ALLOWED,
    SFTP_SERVERS,
    Options,
    Refused,
    argv_of,
    is_sftp_request,
    parse_options,
    request_argv,
)
from hpcgate.model.commands import Command
from hpcgate.transports.ssh import command_line

ARCHIVE = "/home/svc/a: b;$(id).tar.gz"


@pytest.mark.parametrize(
    "argv",
    [
        ["squeue", "--json"],
        ["sbatch", "--parsable", "--job-name", "a; rm -rf / $(id) `id` | x > y"],
        ["scancel", "12"],
        ["env", "-i", "--", "FOO=bar baz", "OMP_NUM_THREADS=4", "sbatch", "--parsable"],
        ["sacct", "--format", "JobID,State", "--noheader", "*"],
        ["timeout", "-s", "KILL", "35", "env", "--", "A=1", "sbatch", "--parsable"],
        ["timeout", "-s", "KILL", "35", "squeue"],
        ["pbs_rstat", "-f"],
        ["timeout", "-s", "KILL", "125", "env", "--", "LC_ALL=C", "tail", "-c", "+1", "--", "/a"],
        ["env", "--", "LC_ALL=C", "stat", "-L", "-c", "%s", "--", "/a b/$(id)"],
        ["env", "--", "LC_ALL=C", "mkdir", "-p", "--", "/home/svc/jobs; rm -rf ~"],
        ["getent", "passwd", "1000", "1003"],
        ["env", "--", "LC_ALL=C", "getent", "group", "0"],
        ["sha256sum", "--", "/a b"],
        ["b2sum", "--", "/a"],
        ["du", "-s", "-B1", "--", "/a"],
        ["cp", "-R", "-P", "--preserve=mode,timestamps", "-T", "--", "/a", "/b"],
        ["mv", "-T", "--", "/a", "/b"],
    ],
)
def test_the_gateway_s_own_commands_run_as_given(argv: list[str]) -> None:
    assert argv_of(shlex.join(argv), DEFAULT_ALLOWED) == argv


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (None, "no command"),
        ("", "empty"),
        ("   ", "empty"),
        ("squeue; id", "not a plain argv"),
        ("squeue && id", "not a plain argv"),
        ("squeue | sh", "not a plain argv"),
        ("squeue > /tmp/x", "not a plain argv"),
        ("squeue $(id)", "not a plain argv"),
        ("squeue `id`", "not a plain argv"),
        ('squeue "$HOME"', "not a plain argv"),
        ("squeue\nid", "not a plain argv"),
        ("squeue 'unclosed", "unparseable"),
        ("bash", "'bash' is not allowed"),
        ("sh -c squeue", "'sh' is not allowed"),
        ("/usr/bin/squeue", "'/usr/bin/squeue' is not allowed"),
        ("python3 -c 'import os'", "'python3' is not allowed"),
        ("env -S 'sh -c id'", "option '-S'"),
        ("env FOO=1", "env without a program"),
        ("env FOO=1 bash", "'bash' is not allowed"),
        ("squeue\0", "NUL"),
        ("timeout 5 bash", "'timeout' is not allowed"),
        ("timeout -s KILL 5 bash", "'bash' is not allowed"),
        ("timeout -s KILL 5", "'timeout' is not allowed"),
        ("timeout -s KILL 5 env -S x", "option '-S'"),
        ("internal-sftpx", "'internal-sftpx' is not allowed"),
        ("sftp-server.sh", "'sftp-server.sh' is not allowed"),
    ],
)
def test_anything_else_is_refused(request_: str | None, why: str) -> None:
    with pytest.raises(Refused, match=why):
        argv_of(request_, DEFAULT_ALLOWED)


@pytest.mark.parametrize(
    "variable",
    [
        *("PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "GCONV_PATH", "GLIBC_TUNABLES"),
        *("BASH_ENV", "ENV", "SHELLOPTS", "TAR_OPTIONS", "SLURM_CONF", "PBS_CONF_FILE"),
    ],
)
def test_variables_that_choose_code_to_run_are_refused(variable: str) -> None:
    """With SFTP the account can write a library or a script; these would run it."""
    for argv in (
        ["env", "--", "A=1", f"{variable}=/home/svc/x", "sbatch", "--parsable"],
        ["timeout", "-s", "KILL", "5", "env", "-i", f"{variable}=/x", "squeue"],
    ):
        with pytest.raises(Refused, match=f"variable {variable} is not allowed"):
            argv_of(shlex.join(argv), DEFAULT_ALLOWED)


def test_other_variables_pass() -> None:
    argv = ["env", "--", "LD=1", "PATHS=x", "MY_LD_PRELOAD=y", "OMP_NUM_THREADS=4", "sbatch"]
    assert argv_of(shlex.join(argv), DEFAULT_ALLOWED) == argv


@pytest.mark.parametrize("compression", ["none", "gzip", "bzip2", "xz"])
@pytest.mark.parametrize("wrap", [False, True])
def test_the_gateway_s_own_tar_commands_run(compression: str, wrap: bool) -> None:
    """Exactly what the files API sends, as the SSH transport sends it."""
    argv = compress_argv("/home/svc/dir -x", ARCHIVE, compression)
    line = command_line(Command(argv, env={"LC_ALL": "C"} if wrap else {}), 60)
    assert argv_of(line, DEFAULT_ALLOWED) == shlex.split(line)


def test_the_gateway_s_tar_commands_name_local_archives() -> None:
    assert "--force-local" in compress_argv("/a", "/b", "gzip")


@pytest.mark.parametrize("option", ["--extract", "-x", "--no-same-owner", "--same-permissions"])
def test_tar_never_extracts(option: str) -> None:
    """The gateway extracts archives itself (hpcgate.files.extraction), never with tar."""
    argv = ["tar", option, "--file=/a.tar", "--force-local", "-C", "/d"]
    with pytest.raises(Refused, match=f"tar option '{option}'"):
        argv_of(shlex.join(argv), DEFAULT_ALLOWED)


GOOD_TAR = ["tar", "--create", "--file=/a.tar", "--force-local", "-C", "/", "--", "x"]


@pytest.mark.parametrize(
    ("words", "why"),
    [
        (["--to-command=sh -c id"], "option '--to-command=sh -c id'"),
        (["--to-command", "sh"], "option '--to-command'"),
        (["--checkpoint-action=exec=touch /tmp/x"], "option '--checkpoint-action=exec="),
        (["--checkpoint-action=echo=%u%{exec}"], "option '--checkpoint-action=echo="),
        (["--use-compress-program=sh"], "option '--use-compress-program=sh'"),
        (["-I", "sh"], "option '-I'"),
        (["-Ish"], "option '-Ish'"),
        (["--use-comp=sh"], "option '--use-comp=sh'"),
        (["--rsh-command=/bin/sh"], "option '--rsh-command"),
        (["--rmt-command=/bin/sh"], "option '--rmt-command"),
        (["--info-script=/x"], "option '--info-script"),
        (["-F", "/x"], "option '-F'"),
        (["--new-volume-script=/x"], "option '--new-volume-script"),
        (["--checkpoint=1x"], "option '--checkpoint=1x'"),
        (["--checkpoint=²"], "option '--checkpoint="),
        (["--files-from=/x"], "option '--files-from"),
        (["-T", "/x"], "option '-T'"),
        (["--file", "/x"], "option '--file'"),
        (["xvf"], "option 'xvf'"),
        (["member"], "option 'member'"),
    ],
)
def test_any_other_tar_option_is_refused(words: list[str], why: str) -> None:
    argv = [*GOOD_TAR[:4], *words, *GOOD_TAR[4:]]
    with pytest.raises(Refused, match=re.escape(why)):
        argv_of(shlex.join(argv), DEFAULT_ALLOWED)
    wrapped = ["timeout", "-s", "KILL", "9", "env", "--", "LC_ALL=C", *argv]
    with pytest.raises(Refused, match="tar option"):
        argv_of(shlex.join(wrapped), DEFAULT_ALLOWED)


@pytest.mark.parametrize(
    "argv",
    [
        ["tar", "--create", "--file=host:/a.tar", "-C", "/", "--", "x"],  # no --force-local
        ["tar", "--file=/a.tar", "--force-local", "-C", "/", "--", "x"],  # no mode
        ["tar", "--create", "--force-local", "-C", "/", "--", "x"],  # no --file=
        ["tar", "--create", "--file=/a", "--file=/b", "--force-local", "--", "x"],
        ["tar", "--", "--create", "--file=/a.tar", "--force-local"],  # names, not options
    ],
)
def test_a_tar_command_lacking_its_required_options_is_refused(argv: list[str]) -> None:
    with pytest.raises(Refused, match="tar needs"):
        argv_of(shlex.join(argv), DEFAULT_ALLOWED)


def test_tar_names_after_the_double_dash_are_names() -> None:
    argv = [*GOOD_TAR, "--to-command=sh", "-I", "sh"]
    assert argv_of(shlex.join(argv), DEFAULT_ALLOWED) == argv


def test_tar_keeps_its_shape_when_the_administrator_allows_it() -> None:
    allowed = parse_options(["--allow", "tar"]).allowed
    with pytest.raises(Refused, match="tar option '--to-command=sh'"):
        argv_of(shlex.join([*GOOD_TAR[:4], "--to-command=sh"]), allowed)


@pytest.mark.parametrize(
    "argv",
    [
        ["getent", "-s", "../x", "passwd", "0"],  # loads libnss_../x.so.2 from the cwd
        ["getent", "passwd", "0", "-s", "../x"],  # getent's argp permutes options
        ["getent", "--service=../x", "passwd"],
        ["getent", "hosts", "example.org"],
        ["getent"],
    ],
)
def test_getent_runs_only_as_a_passwd_or_group_lookup(argv: list[str]) -> None:
    with pytest.raises(Refused, match="getent runs only as"):
        argv_of(shlex.join(argv), DEFAULT_ALLOWED)


def test_the_default_programs_include_the_files_api_s() -> None:
    files_api = {"getent", "md5sum", "sha1sum", "sha256sum", "sha512sum", "b2sum", "du"}
    assert files_api | {"cp", "mv", "tar", "tail", "stat", "mkdir", "sbatch", "qsub"} <= (
        DEFAULT_ALLOWED
    )


@pytest.mark.parametrize(
    ("request_", "sftp"),
    [
        ("internal-sftp", True),
        ("internal-sftp -l INFO", True),
        ("/usr/lib/openssh/sftp-server", True),
        ("/usr/libexec/openssh/sftp-server -f AUTHPRIV -l INFO", True),
        ("sftp-server", True),
        (None, False),
        ("", False),
        ("sftp", False),
        ("internal-sftpd", False),
        ("/usr/lib/openssh/sftp-server2", False),
        ("squeue internal-sftp", False),
        ("env -- A=1 internal-sftp", False),
    ],
)
def test_sftp_requests_are_told_apart(request_: str | None, sftp: bool) -> None:
    assert is_sftp_request(request_) is sftp


def test_an_sftp_request_runs_the_sftp_server_with_the_administrator_s_options_only() -> None:
    options = parse_options(["--sftp-server", "/opt/ssh/sftp-server", "--sftp-option", "-l"])
    for request in ("internal-sftp", "/home/svc/sftp-server -d / -R", "sftp-server -P x"):
        assert request_argv(request, options) == ["/opt/ssh/sftp-server", "-l"]


def test_the_sftp_server_is_found_where_the_distributions_put_it() -> None:
    present = [path for path in SFTP_SERVERS if Path(path).exists()]
    if not present:
        pytest.fail(f"no sftp-server in {SFTP_SERVERS} on this machine")
    assert request_argv("internal-sftp", Options()) == [present[0]]


def test_no_sftp_refuses_it_and_leaves_commands() -> None:
    options = parse_options(["--no-sftp"])
    assert options.allowed == DEFAULT_ALLOWED
    with pytest.raises(Refused, match="SFTP is turned off"):
        request_argv("internal-sftp", options)
    assert request_argv("squeue --json", options) == ["squeue", "--json"]


def test_the_administrator_narrows_the_programs_and_sftp_stays() -> None:
    options = parse_options(["--allow", "squeue", "--allow", "sacct"])
    assert options.allowed == {"squeue", "sacct"}
    assert options.sftp
    assert request_argv("squeue", options) == ["squeue"]
    with pytest.raises(Refused, match="'sbatch' is not allowed"):
        request_argv("sbatch --parsable", options)


def test_the_forced_command_line_s_options() -> None:
    args = ["--sftp-option", "-l", "--allow", "squeue", "--sftp-option", "INFO", "--no-sftp"]
    args += ["--sftp-server", "/usr/local/libexec/sftp-server"]
    assert parse_options(args) == Options(
        frozenset({"squeue"}), False, "/usr/local/libexec/sftp-server", ("-l", "INFO")
    )
    assert parse_options([]) == Options(DEFAULT_ALLOWED, True, None, ())


@pytest.mark.parametrize(
    "args",
    [
        ["--allow"],
        ["--allow", "/bin/sh"],
        ["-x"],
        ["--allow", ""],
        ["--sftp-server"],
        ["--sftp-server", "sftp-server"],
        ["--sftp-server", "/a", "--sftp-server", "/b"],
        ["--sftp-option"],
        ["--no-sftp", "yes"],
    ],
)
def test_a_bad_forced_command_line_refuses_everything(args: list[str]) -> None:
    with pytest.raises(Refused):
        parse_options(args)
