"""``labdevices toolpath JOB``: plan a print job into G-code, a preview picture and a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import app
from ._output import stdout_console


@app.command()
def toolpath(
    job_file: Annotated[Path, typer.Argument(help="print job, TOML or JSON")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="G-code file to write")
    ] = None,
    preview: Annotated[
        Path | None, typer.Option("--preview", help="preview picture, .png or .svg")
    ] = None,
    layer: Annotated[
        int | None, typer.Option("--layer", help="layer shown from above (1-based; default top)")
    ] = None,
) -> None:
    """Plan a print: layer paths, deposition physics, G-code in the printer's dialect."""
    from ..toolpath._kernel import compiled

    if compiled():  # nothing to load: the kernels were compiled at install
        _toolpath(job_file, output, preview, layer)
        return
    from ..toolpath._warmup import start_kernels_in_background

    kernels = start_kernels_in_background()
    try:
        _toolpath(job_file, output, preview, layer)
    finally:
        kernels.join()


def _toolpath(job_file: Path, output: Path | None, preview: Path | None, layer: int | None) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .._exit import request_quick_exit
    from ..errors import ConfigurationError
    from ..toolpath import load_job, plan_job
    from ..toolpath._preview import render_preview, summary_table

    console = stdout_console()
    job = load_job(job_file)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("loading", total=None)
        result = plan_job(job, progress=lambda stage: bar.update(task, description=stage))
        if preview is not None:
            bar.update(task, description="preview")
            if layer is not None and not 1 <= layer <= len(result.layers):
                raise ConfigurationError(
                    f"--layer: {layer} is not a layer of this job (1…{len(result.layers)})"
                )
            render_preview(result, preview, None if layer is None else layer - 1)
    if output is not None:
        _write_atomically(output, result.gcode_bytes())
    console.print(summary_table(result))
    for note in result.notes:
        console.print(f"[cyan]note:[/] {note}", highlight=False)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    written = [str(p) for p in (output, preview) if p is not None]
    if written:
        # plain, as the notes: highlighting would first compile rich's regexes (2 ms)
        console.print("wrote " + ", ".join(written), highlight=False)
    request_quick_exit()  # every file is closed: no need for the slow final collection


@app.command()
def warmup() -> None:
    """Compile the toolpath kernels ahead of time into the package (installing does it;
    again after editing a kernel). Where the package cannot be written: numba's cache."""
    import os
    import subprocess
    import sys

    from rich.console import Console

    from ..toolpath import _kernel

    here = os.path.dirname(_kernel.__file__)
    if os.access(here, os.W_OK):
        # a process of its own: the build needs the kernels as numba functions, not loaded
        done = subprocess.run([sys.executable, "-m", "labdevices.toolpath._build_kernels"])
        if done.returncode:
            Console(stderr=True).print(
                "[red]error:[/] the toolpath kernels could not be compiled ahead of time "
                "(numba's pycc needs setuptools and a C compiler, see above); jobs run under "
                "numba's JIT meanwhile"
            )
            raise typer.Exit(1)
        return
    from ..toolpath._warmup import cache_dir, warm_up

    seconds = warm_up()
    Console().print(f"toolpath kernels ready in {seconds:.1f} s (numba cache: {cache_dir()})")


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it: a failure
    never leaves a partial or empty G-code file behind."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
