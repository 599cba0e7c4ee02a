"""excite from Python: surrogates on numpy arrays, the Euler reference,
verification and pipelines. Every computation runs in excite's Rust library
with the GIL released; errors are ExciteError with excite's message and hint."""

import os
from typing import Any, Mapping, Sequence

import numpy as np
import numpy.typing as npt

__version__: str

class ExciteError(Exception):
    """An error from excite: the message names what is at fault."""

    hint: str | None
    """How to fix it, where excite knows."""

class Surrogate:
    """A loaded surrogate: a bundle, an engine folder or an ONNX file."""

    @staticmethod
    def load(path: str | os.PathLike[str], trusted_key: str | os.PathLike[str] | None = None, threads: int = 0) -> Surrogate:
        """Loads a bundle (folder or .tar.gz), an engine folder or an ONNX
        file (any MLP-shaped model). With `trusted_key` (a minisign public
        key file) a bundle must be signed by that key."""

    def predict(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Outputs for `x` of shape (n, len(inputs)), float32 → (n, len(outputs)).
        A C-contiguous float32 array is read without a copy."""

    def jacobian(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """d outputs / d inputs per row: (n, len(outputs), len(inputs)),
        exact derivatives of the network (forward-mode tangents)."""

    @property
    def inputs(self) -> list[str]:
        """Input names, in column order."""

    @property
    def outputs(self) -> list[str]:
        """Output names, in column order."""

    @property
    def info(self) -> dict[str, Any]:
        """What was loaded: source, path, engine, and the manifest."""

def simulate(
    model: str,
    t_end: float,
    dt: float = 0.01,
    sample_every: float = 0.1,
    initial: Mapping[str, Sequence[float]] | None = None,
    params: Mapping[str, Sequence[float]] | None = None,
    threads: int = 0,
    scheme: str = "euler",
) -> dict[str, npt.NDArray[np.float32]]:
    """Solves cells of a built-in model (by name) or a CellML file (a path
    ending in .cellml; scheme "euler" or "rush-larsen") with the reference.
    `initial` and `params` give one value, or one per cell; the rest take the
    model's defaults. Returns "t" (samples,) and each state (cells, samples)."""

def verify(
    model: str | os.PathLike[str],
    problem: str | os.PathLike[str] | None = None,
    cells: int = 200,
    max_mae: float | None = None,
    max_abs_error: float | None = None,
    batch: int = 1024,
    seconds: float = 0.5,
    reference_cells: int = 20000,
    out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Verifies a model against the Euler reference on fresh cells; the
    report as a dict (and its files in `out`). `problem`: the dataset of a
    model that does not record its own."""

def pipeline(file: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Runs a pipeline file; each stage's outcome."""
