"""The reference model's convolutions: im2col, col2im and the three conv GEMMs.

Part of the NumPy reference model (:mod:`nmsat.reference`, which re-exports every name
here): a convolution ``x[N, C, H, W] * w[Cout, C/groups, kh, kw]`` is lowered to GEMMs
through :func:`im2col` (K order: kernel row, kernel column, channel fastest), each GEMM
computed by the ``matmul`` the caller passes (the engine model,
:func:`nmsat.reference.engine_gemm`, in a training step); :func:`conv_direct` is the
independent float64 check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ConvGeom", "col2im", "conv_bp", "conv_direct", "conv_ff", "conv_weight_from_matrix",
           "conv_weight_matrix", "conv_wg", "im2col"]


@dataclass(frozen=True)
class ConvGeom:
    """Geometry of a 2-D convolution ``x[N, C, H, W] * w[Cout, C/groups, kh, kw]``."""

    n: int
    c: int
    h: int
    w: int
    cout: int
    kh: int
    kw: int
    stride: int = 1
    padding: int = 0
    groups: int = 1

    def __post_init__(self) -> None:
        for name in ("n", "c", "h", "w", "cout", "kh", "kw", "stride", "padding", "groups"):
            v = getattr(self, name)
            least = 0 if name == "padding" else 1
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < least:
                raise ValueError(f"ConvGeom.{name} must be an integer >= {least}, not {v!r}")
        if self.c % self.groups or self.cout % self.groups:
            raise ValueError(f"channels ({self.c}, {self.cout}) must divide into "
                             f"groups={self.groups}")
        if self.ho < 1 or self.wo < 1:
            raise ValueError("convolution output would be empty")

    @property
    def ho(self) -> int:
        return (self.h + 2 * self.padding - self.kh) // self.stride + 1

    @property
    def wo(self) -> int:
        return (self.w + 2 * self.padding - self.kw) // self.stride + 1


def im2col(x: np.ndarray, g: ConvGeom) -> np.ndarray:
    """``x[N, C, H, W]`` (one group's channels) -> ``cols[N*Ho*Wo, kh*kw*C]``.

    K order is (kernel row, kernel column, channel) with the channel fastest, so an N:M
    group along the input channels is M consecutive K elements.
    """
    n, c = x.shape[:2]
    xp = np.pad(x, ((0, 0), (0, 0), (g.padding, g.padding), (g.padding, g.padding)))
    cols = np.empty((n, g.ho, g.wo, g.kh, g.kw, c), dtype=x.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            patch = xp[:, :, i: i + g.stride * g.ho: g.stride, j: j + g.stride * g.wo: g.stride]
            cols[:, :, :, i, j, :] = patch.transpose(0, 2, 3, 1)
    return cols.reshape(n * g.ho * g.wo, g.kh * g.kw * c)


def col2im(cols: np.ndarray, g: ConvGeom, c: int) -> np.ndarray:
    """Scatter-add ``cols[N*Ho*Wo, kh*kw*c]`` back to ``[N, c, H, W]``.

    Float data is added in fp32 into a zero buffer, kernel positions in row-major (i, j)
    order: the order the output buffer's accumulate-on-write port uses.
    """
    acc_dtype = np.float32 if np.issubdtype(cols.dtype, np.floating) else np.int64
    hp, wp = g.h + 2 * g.padding, g.w + 2 * g.padding
    out = np.zeros((g.n, c, hp, wp), dtype=acc_dtype)
    cc = cols.reshape(g.n, g.ho, g.wo, g.kh, g.kw, c).astype(acc_dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            out[:, :, i: i + g.stride * g.ho: g.stride, j: j + g.stride * g.wo: g.stride] += (
                cc[:, :, :, i, j, :].transpose(0, 3, 1, 2))
    return out[:, :, g.padding: g.padding + g.h, g.padding: g.padding + g.w]


def conv_weight_matrix(w: np.ndarray) -> np.ndarray:
    """``w[Cout, C, kh, kw]`` -> ``[Cout, kh*kw*C]`` in im2col's K order."""
    return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)


def conv_weight_from_matrix(wm: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    cout, c, kh, kw = shape
    return wm.reshape(cout, kh, kw, c).transpose(0, 3, 1, 2)


def _split_groups(g: ConvGeom):
    cg, og = g.c // g.groups, g.cout // g.groups
    return [(slice(i * cg, (i + 1) * cg), slice(i * og, (i + 1) * og)) for i in range(g.groups)]


def conv_ff(x: np.ndarray, w: np.ndarray, g: ConvGeom, matmul) -> np.ndarray:
    """Forward convolution through im2col: ``matmul(A, B)`` computes each group's GEMM
    ``cols[N*Ho*Wo, K] @ Wmat^T[K, Cout/groups]``."""
    outs = []
    for cs, os_ in _split_groups(g):
        cols = im2col(x[:, cs], g)
        y = matmul(cols, conv_weight_matrix(w[os_]).T)
        outs.append(y.reshape(g.n, g.ho, g.wo, -1).transpose(0, 3, 1, 2))
    return np.concatenate(outs, axis=1)


def conv_bp(dy: np.ndarray, w: np.ndarray, g: ConvGeom, matmul) -> np.ndarray:
    """Data gradient: per group ``dcols = dY[N*Ho*Wo, Cout/g] @ Wmat[Cout/g, kh*kw*C/g]``
    (K = output channels, where BDWP's BP mask groups), then :func:`col2im`."""
    outs = []
    for cs, os_ in _split_groups(g):
        dym = dy[:, os_].transpose(0, 2, 3, 1).reshape(-1, os_.stop - os_.start)
        dcols = matmul(dym, conv_weight_matrix(w[os_]))
        outs.append(col2im(dcols, g, cs.stop - cs.start))
    return np.concatenate(outs, axis=1)


def conv_wg(x: np.ndarray, dy: np.ndarray, g: ConvGeom, matmul) -> np.ndarray:
    """Weight gradient: per group ``dWmat = dY^T[Cout/g, N*Ho*Wo] @ cols[N*Ho*Wo, K]``."""
    outs = []
    for cs, os_ in _split_groups(g):
        cols = im2col(x[:, cs], g)
        dym = dy[:, os_].transpose(0, 2, 3, 1).reshape(-1, os_.stop - os_.start)
        dwm = matmul(dym.T, cols)
        outs.append(conv_weight_from_matrix(dwm, (os_.stop - os_.start, cs.stop - cs.start,
                                                  g.kh, g.kw)))
    return np.concatenate(outs, axis=0)


def conv_direct(x: np.ndarray, w: np.ndarray, g: ConvGeom) -> np.ndarray:
    """Direct (loop) convolution in float64: the independent check for :func:`conv_ff`."""
    xp = np.pad(x.astype(np.float64),
                ((0, 0), (0, 0), (g.padding, g.padding), (g.padding, g.padding)))
    y = np.zeros((g.n, g.cout, g.ho, g.wo))
    og, cg = g.cout // g.groups, g.c // g.groups
    for o in range(g.cout):
        grp = o // og
        for i in range(g.kh):
            for j in range(g.kw):
                patch = xp[:, grp * cg:(grp + 1) * cg,
                           i: i + g.stride * g.ho: g.stride, j: j + g.stride * g.wo: g.stride]
                y[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j].astype(np.float64))
    return y
