"""``pgflow figures``: regenerate the figure gallery (figures/fig*.png and .pdf), with progress.

Each figure is computed (or read from the data cache, OUT/.cache, keyed by its config, the package
version and its script), drawn in the gallery's one style and written as PNG and PDF with fixed
metadata: running it twice gives byte-identical files. ``--only 2 5`` redraws figures 2 and 5;
``--quick`` uses tiny sizes (the whole gallery in well under a minute) and writes to ./figures/quick;
``--list`` names the figures. Figure 7 measures this machine's wall times: it is drawn from the
stored measurement (figures/data/) unless ``--remeasure`` asks for a new one. The default output
folder is ./figures, which is the gallery of a clone of pgflow when run from its top folder.
"""

from __future__ import annotations

from ..figures import gallery
from .errors import check_folder


def register(subparsers) -> None:
    p = subparsers.add_parser("figures", help="regenerate the figure gallery (PNG + PDF, byte-reproducible)",
                              description=__doc__)
    gallery.add_arguments(p)
    p.add_argument("--only", nargs="+", metavar="N", default=None,
                   help=f"figure numbers (1-{len(gallery.FIGURES)}) or names to draw (default: all)")
    p.add_argument("--remeasure", action="store_true",
                   help="measure the figures that time this machine (7) afresh and store the measurement "
                        "in OUT/data/ (default: draw the stored one)")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    p.set_defaults(handler=figures_command)


def figures_command(args) -> int:
    if args.list:
        for i, name in enumerate(gallery.FIGURES, 1):
            print(f"{i}  {name}: {gallery.module(name).TITLE}")
        return 0
    # before any figure is computed: a bad folder would otherwise fail only at the first write
    for option, folder in (("--out", args.out), ("--cache", gallery.cache_argument(args))):
        if folder not in (None, "default"):
            check_folder(folder, option)
    gallery.render_all(args.only, args.out, quick=args.quick, cache=gallery.cache_argument(args),
                       remeasure=args.remeasure)
    return 0
