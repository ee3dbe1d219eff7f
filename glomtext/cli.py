"""The ``glomtext`` command: ``glomtext {pretrain,islands,viz,eval} ...``.

Each subcommand lives in its own module with a ``main(argv)`` function; this file only dispatches,
importing the module on demand so ``glomtext --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "pretrain": ("glomtext.pretrain", "masked-token pretraining (also: accelerate launch -m glomtext.pretrain)"),
    "islands": ("glomtext.commands.islands", "islands of agreement and part-whole trees for sentences"),
    "viz": ("glomtext.commands.viz", "pictures: similarity heatmaps, islands over iterations, trees"),
    "eval": ("glomtext.evaluation.cli", "score islands/trees against treebanks and discontinuous units"),
}


def usage() -> str:
    lines = ["usage: glomtext COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `glomtext COMMAND --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"glomtext: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
