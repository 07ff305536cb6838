"""Arguments a shell would not pass on verbatim: each must reach the remote program as is."""

HOSTILE_ARGV = (
    "; rm -rf /",
    "$(id)",
    "`id`",
    "a\nb",
    "it's",
    '"quoted"',
    "back\\slash",
    "*",
    "~",
    "",
    " ",
    "-n",
    "$HOME",
    "a\tb|c&d>e<f",
)
