"""One VA-RED² convolution: a gate weighs cheaper alternatives of the layer (METHODS.md §3).

``DynamicConv`` replaces a convolution f_l by module surgery and keeps it as ``conv`` (one full
kernel: every alternative shares its weights). Alternatives, on two dimensions:

* channel i = 0..S_c−1: compute the first C_i = ⌈C_out·2^−i⌉ output filters (r_i = 2^−i, the
  thesis's i−1 counted from 0), and make the other C_out − C_i channels with the cheap op Φ^c_i;
  generated channel m reads computed channel m mod C_i;
* temporal j = 0..S_t−1: compute every R_j = 2^j-th output frame (the conv's temporal stride × R_j;
  for a per-frame Conv2d, every R_j-th input frame), and make frame iR + k (0 < k < R) from computed
  frame iR with the position-specific cheap op Φ^t_{j,k} (eq. 3.1; one op per position k that
  occurs, k < T_out).

Mixing (eq. 3.5): Y_c = Σ_i V_c[i]·f^c(X, r_i), Y = Σ_j V_t[j]·f^t(Y_c, R_j). Three forward paths, one
semantics:

* mixed (training, ``infer_mode`` False): the full convolution is computed once and every
  alternative is sliced and subsampled from it, so the convolution's cost does not grow with S;
* computed (``infer_mode`` True): per sample, only the alternatives with non-zero weight exist. The
  largest one is computed once — the first C_{i0} filters on every R_{j0}-th frame, i0/j0 the first
  non-zero index of each dimension — the smaller ones are sliced/subsampled from it, and all are
  mixed with the same weights, so the output equals the mixed path's. Samples that share a pattern
  of non-zero weights run as one batch;
* forced (``forced`` = (j, c)): every sample runs alternative (j, c) alone at weight 1 and the gate
  is not run (the forced-alternative baselines). (0, 0) is the plain convolution, exactly.

An all-zero gate (``ZERO_GATE_RULES``, METHODS.md's "open" point): ``"cheapest"`` (default) gives a
sample whose weights in a dimension are all zero that dimension's cheapest alternative at weight 1,
in every path, so they agree and the layer always has an output; ``"zero"`` makes the layer's output
zero for that sample and computes nothing for it (the literal eq. 3.5 would leave the Φ^t biases).

A layer built with one option on both dimensions has no gate and no cheap op: it is the plain
convolution (the base network), with state-dict keys matching the gated network's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from searchlab.methods.vared.cheap_ops import CHEAP_OPS, ClipLayout, make_cheap_op
from searchlab.methods.vared.gate import Gate

__all__ = ["ZERO_GATE_RULES", "DynamicConv", "channel_counts", "temporal_strides"]

ZERO_GATE_RULES: tuple[str, ...] = ("cheapest", "zero")


def channel_counts(out_channels: int, options: int) -> tuple[int, ...]:
    """C_i = ⌈C_out·2^−i⌉ for i < options: the filters channel alternative i computes."""
    return tuple(-(-out_channels // 2**i) for i in range(options))


def temporal_strides(options: int) -> tuple[int, ...]:
    """R_j = 2^j for j < options: alternative j computes every R_j-th output frame."""
    return tuple(2**j for j in range(options))


def _conv_out(size: int, *, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _mix(weights: Tensor, alternatives: list[Tensor]) -> Tensor:
    """Σ_i weights[:, i]·alternatives[i] (weights (N, len(alternatives)))."""
    shape = (-1,) + (1,) * (alternatives[0].dim() - 1)
    return sum(weights[:, i].view(shape) * y for i, y in enumerate(alternatives))


def _one_hot(samples: int, index: int, options: int, *, like: Tensor) -> Tensor:
    # torch.full + one_hot: ops fvcore knows to be free, so traced forced paths count cleanly
    hot = F.one_hot(torch.full((samples,), index, dtype=torch.long, device=like.device), options)
    return hot.to(like.dtype)


def _cheapest_if_empty(weights: Tensor) -> Tensor:
    """The "cheapest" rule: a row of zeros gets weight 1 on its last (cheapest) alternative."""
    if weights.shape[1] == 1:
        return weights
    empty = weights.max(dim=1).values == 0
    return torch.cat([weights[:, :-1], weights[:, -1:].masked_fill(empty.unsqueeze(1), 1.0)], dim=1)


def _problems(
    conv: nn.Module, *, frames: int, channel_options: int, temporal_options: int, cheap_op: str, zero_gate: str
) -> list[str]:
    if not isinstance(conv, nn.Conv2d | nn.Conv3d):
        return [f"conv must be an nn.Conv2d or nn.Conv3d, got {type(conv).__name__}"]
    problems = []
    if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        problems.append("conv must have groups=1, zero padding and numeric padding (its filters are sliced)")
    if frames < 1:
        problems.append(f"frames={frames} must be >= 1")
    if channel_options < 1 or conv.out_channels < 2 ** (channel_options - 1):
        problems.append(f"channel_options={channel_options} needs >= 1 and out_channels >= 2^(options-1) "
                        f"(the conv has {conv.out_channels})")
    if temporal_options < 1:
        problems.append(f"temporal_options={temporal_options} must be >= 1")
    if cheap_op not in CHEAP_OPS:
        problems.append(f"cheap_op {cheap_op!r} is not one of {list(CHEAP_OPS)}")
    if zero_gate not in ZERO_GATE_RULES:
        problems.append(f"zero_gate {zero_gate!r} is not one of {list(ZERO_GATE_RULES)}")
    return problems


class DynamicConv(nn.Module):
    """A convolution whose gate mixes its temporal × channel alternatives (module docstring).

    ``frames`` is the T of the layer's input (a Conv2d's input is (N·T, C, H, W) and is viewed as
    (N, T, ...)). After each forward ``last_weights`` holds the (v_t, v_c) used, after the zero-gate
    rule, with autograd history when the gate ran (the efficiency loss reads them); one-hot rows when
    forced, columns of ones for a layer without gate.
    """

    def __init__(
        self,
        conv: nn.Conv3d | nn.Conv2d,
        *,
        frames: int,
        channel_options: int,
        temporal_options: int,
        gate_hidden: int | None,
        beta_init: float,
        cheap_op: str = "depthwise",
        zero_gate: str = "cheapest",
    ) -> None:
        super().__init__()
        problems = _problems(conv, frames=frames, channel_options=channel_options, temporal_options=temporal_options,
                             cheap_op=cheap_op, zero_gate=zero_gate)
        if problems:
            raise ValueError("invalid DynamicConv arguments: " + "; ".join(problems))
        self.conv = conv
        self.layout = ClipLayout(video=isinstance(conv, nn.Conv3d))
        self.frames = frames
        # output frames of the full conv: a 3D conv's own temporal geometry, a per-frame conv keeps T
        self.frames_out = _conv_out(frames, kernel=conv.kernel_size[0], stride=conv.stride[0],
                                    padding=conv.padding[0], dilation=conv.dilation[0]) if self.layout.video else frames
        self.channels = channel_counts(conv.out_channels, channel_options)
        self.strides = temporal_strides(temporal_options)
        self.cheap_op, self.zero_gate = cheap_op, zero_gate
        gated = channel_options > 1 or temporal_options > 1
        self.gate = Gate(in_channels=conv.in_channels, frames=frames, hidden=gate_hidden,
                         temporal_options=temporal_options, channel_options=channel_options,
                         beta_init=beta_init) if gated else None
        out = conv.out_channels
        self.channel_ops = nn.ModuleList(
            make_cheap_op(cheap_op, channels=out - c, layout=self.layout) for c in self.channels[1:])
        # Φ^t_{j,k} only for positions k that occur in the output (k < T_out): a short clip (R(2+1)D's
        # last stage sees 1-2 frames) would leave the others without gradient, which DDP refuses
        self.temporal_ops = nn.ModuleList(
            nn.ModuleList(make_cheap_op(cheap_op, channels=out, layout=self.layout)
                          for _ in range(1, min(r, self.frames_out)))
            for r in self.strides[1:])
        self.infer_mode = False
        self._forced: tuple[int, int] | None = None
        self.last_weights: tuple[Tensor, Tensor] | None = None

    @property
    def options(self) -> tuple[int, int]:
        """(S_t, S_c)."""
        return len(self.strides), len(self.channels)

    @property
    def forced(self) -> tuple[int, int] | None:
        """(temporal index, channel index) every sample runs at weight 1, or None (the gate decides)."""
        return self._forced

    @forced.setter
    def forced(self, alternative: tuple[int, int] | None) -> None:
        if alternative is not None:
            t, c = (int(i) for i in alternative)
            if not (0 <= t < len(self.strides) and 0 <= c < len(self.channels)):
                raise ValueError(f"forced alternative {alternative} is out of range for S_t={len(self.strides)}, "
                                 f"S_c={len(self.channels)}")
            alternative = (t, c)
        self._forced = alternative

    def forward(self, x: Tensor) -> Tensor:
        clip = self._to_clip(x)
        samples = clip.shape[0]
        if self._forced is not None or self.gate is None:
            t, c = self._forced or (0, 0)
            s_t, s_c = self.options
            self.last_weights = (_one_hot(samples, t, s_t, like=x), _one_hot(samples, c, s_c, like=x))
            if (t, c) == (0, 0):
                return self.conv(x)
            return self._from_clip(self._alternative(clip, t, c))
        v_t, v_c = self.gate(clip if self.layout.video else clip.transpose(1, 2))
        if self.zero_gate == "cheapest":
            v_t, v_c = _cheapest_if_empty(v_t), _cheapest_if_empty(v_c)
        self.last_weights = (v_t, v_c)
        out = self._computed(clip, v_t, v_c) if self.infer_mode else self._mixed(clip, v_t, v_c)
        return self._from_clip(out)

    # -- layouts ---------------------------------------------------------------------------------
    def _to_clip(self, x: Tensor) -> Tensor:
        if self.layout.video:
            return x
        if x.shape[0] % self.frames:
            raise ValueError(f"a per-frame layer of {self.frames} frames got a batch of {x.shape[0]} frames")
        return x.unflatten(0, (-1, self.frames))

    def _from_clip(self, y: Tensor) -> Tensor:
        return y if self.layout.video else y.flatten(0, 1)

    def _out_shape(self, clip: Tensor) -> tuple[int, ...]:
        conv, samples = self.conv, clip.shape[0]
        height, width = (_conv_out(size, kernel=k, stride=s, padding=p, dilation=d) for size, k, s, p, d in
                         zip(clip.shape[-2:], conv.kernel_size[-2:], conv.stride[-2:], conv.padding[-2:],
                             conv.dilation[-2:]))
        if self.layout.video:
            return samples, conv.out_channels, self.frames_out, height, width
        return samples, self.frames_out, conv.out_channels, height, width

    # -- the alternatives ------------------------------------------------------------------------
    def _conv(self, clip: Tensor, *, channels: int, stride: int) -> Tensor:
        """The first ``channels`` filters on every ``stride``-th output frame, in the clip layout."""
        conv = self.conv
        if channels == conv.out_channels and stride == 1:
            return self._to_clip(conv(self._from_clip(clip)))
        weight = conv.weight[:channels]
        bias = None if conv.bias is None else conv.bias[:channels]
        if self.layout.video:
            return F.conv3d(clip, weight, bias, stride=(conv.stride[0] * stride, *conv.stride[1:]),
                            padding=conv.padding, dilation=conv.dilation)
        frames = clip[:, ::stride] if stride > 1 else clip
        out = F.conv2d(frames.flatten(0, 1), weight, bias, stride=conv.stride, padding=conv.padding,
                       dilation=conv.dilation)
        return out.unflatten(0, frames.shape[:2])

    def _channel_alternative(self, y: Tensor, i: int) -> Tensor:
        """f^c(X, r_i) from y, which holds at least the first C_i filters' outputs."""
        dim, computed = self.layout.channel_dim, self.channels[i]
        head = y.narrow(dim, 0, computed) if y.shape[dim] != computed else y
        if i == 0:
            return head
        missing = self.conv.out_channels - computed
        source = torch.cat([head] * -(-missing // computed), dim=dim) if missing > computed else head
        source = source.narrow(dim, 0, missing) if source.shape[dim] != missing else source
        return torch.cat([head, self.channel_ops[i - 1](source)], dim=dim)

    def _temporal_alternative(self, y_c: Tensor, j: int, *, every: int) -> Tensor:
        """f^t(Y_c, R_j) from y_c, which holds every ``every``-th output frame (``every`` divides R_j)."""
        dim, stride = self.layout.time_dim, self.strides[j]
        step = stride // every
        computed = y_c if step == 1 else y_c[(slice(None),) * dim + (slice(None, None, step),)]
        if stride == 1:
            return computed
        # each output frame is written once: computed frames at iR, Φ^t_k's at iR + k
        shape = list(computed.shape)
        shape[dim] = self.frames_out
        out = computed.new_empty(shape)
        out[self._every(stride, start=0, count=computed.shape[dim])] = computed
        for k, op in enumerate(self.temporal_ops[j - 1], start=1):
            count = -(-(self.frames_out - k) // stride)  # frames iR + k that exist (k < T_out: at least one)
            out[self._every(stride, start=k, count=count)] = op(computed.narrow(dim, 0, count))
        return out

    def _every(self, stride: int, *, start: int, count: int) -> tuple[slice, ...]:
        """Index of frames start, start + stride, ... (``count`` of them) along the time dimension."""
        return (slice(None),) * self.layout.time_dim + (slice(start, start + stride * (count - 1) + 1, stride),)

    def _alternative(self, clip: Tensor, t: int, c: int) -> Tensor:
        y = self._conv(clip, channels=self.channels[c], stride=self.strides[t])
        return self._temporal_alternative(self._channel_alternative(y, c), t, every=self.strides[t])

    # -- the mixed and computed paths ------------------------------------------------------------
    def _mixed(self, clip: Tensor, v_t: Tensor, v_c: Tensor) -> Tensor:
        s_t, s_c = self.options
        y = self._conv(clip, channels=self.conv.out_channels, stride=1)
        # a dimension that is off has one alternative at weight 1: nothing to mix
        y_c = y if s_c == 1 else _mix(v_c, [self._channel_alternative(y, i) for i in range(s_c)])
        out = y_c if s_t == 1 else _mix(v_t, [self._temporal_alternative(y_c, j, every=1) for j in range(s_t)])
        if self.zero_gate == "zero":
            computed = (v_t.max(dim=1).values > 0) & (v_c.max(dim=1).values > 0)
            out = out * computed.to(out.dtype).view((-1,) + (1,) * (out.dim() - 1))
        return out

    def _computed(self, clip: Tensor, v_t: Tensor, v_c: Tensor) -> Tensor:
        groups: dict[tuple[tuple[bool, ...], tuple[bool, ...]], list[int]] = {}
        for sample, key in enumerate(zip(map(tuple, (v_t > 0).tolist()), map(tuple, (v_c > 0).tolist()))):
            groups.setdefault(key, []).append(sample)
        if len(groups) == 1:
            ((on_t, on_c),) = groups
            return self._computed_group(clip, v_t, v_c, on_t=on_t, on_c=on_c)
        out = clip.new_empty(self._out_shape(clip))
        for (on_t, on_c), samples in groups.items():
            index = torch.tensor(samples, device=clip.device)
            out[index] = self._computed_group(clip[index], v_t[index], v_c[index], on_t=on_t, on_c=on_c)
        return out

    def _computed_group(
        self, clip: Tensor, v_t: Tensor, v_c: Tensor, *, on_t: tuple[bool, ...], on_c: tuple[bool, ...]
    ) -> Tensor:
        """Samples sharing one pattern of non-zero weights: only those alternatives run."""
        temporal = [j for j, on in enumerate(on_t) if on]
        channel = [i for i, on in enumerate(on_c) if on]
        if not temporal or not channel:  # zero_gate "zero": nothing is computed
            return clip.new_zeros(self._out_shape(clip))
        s_t, s_c = self.options
        every = self.strides[temporal[0]]
        y = self._conv(clip, channels=self.channels[channel[0]], stride=every)
        y_c = y if s_c == 1 else _mix(v_c[:, channel], [self._channel_alternative(y, i) for i in channel])
        if s_t == 1:
            return y_c
        return _mix(v_t[:, temporal], [self._temporal_alternative(y_c, j, every=every) for j in temporal])
