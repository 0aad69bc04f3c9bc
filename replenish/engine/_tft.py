"""The TFT module of pytorch-forecasting: construction, a fast forward, training, checkpoints.

The model is always ``pytorch_forecasting.TemporalFusionTransformer``, built with
``from_dataset`` on the small dataset of :func:`replenish.engine._features.fit_dataset` and
rebuilt from its JSON hyperparameters when a saved model folder is loaded (the weights are
read with ``torch.load(weights_only=True)``: no unpickling of arbitrary objects).

:func:`forward_fixed` computes ``TemporalFusionTransformer.forward``'s prediction for batches
whose encoders all have the batch's full width (every series with at least
``encoder_length`` periods), with the module's own submodules and weights, but: the encoder
length comes from the tensor shape instead of ``int(encoder_lengths.max())``; the LSTMs run
without packing (no ``lengths.cpu()``); the attention mask is built from shapes; static
contexts are applied once per window instead of once per period; the attention heads run as
one batched product. So the forward has no host synchronisation and no data-dependent
shapes, and on CPUs it evaluates the per-variable networks once per distinct input value.
Batches with shorter encoders take the same function with packed LSTMs and a padding mask
(eager). Tests check both against the stock forward.

Compiling (``Runner(compile=True)``): Dynamo does not trace ``nn.LSTM``, so compiling the
whole forward splits it into a dozen graphs around it. Instead the two regions on either
side, :func:`encode` and :func:`decode`, are compiled whole (``fullgraph=True``: a graph
break is an error, and a test counts zero breaks with ``torch._dynamo.explain``), and the
two LSTMs between them run eagerly on cuDNN. Each region is called once per batch with
static shapes (prediction pads its last batch), so it compiles once per shape and mode.

Precision: with autocast (bfloat16 on CUDA by default) the regions run in bfloat16, the
LSTMs in float32 (cuDNN's autocast path would run them in float16), and the output layer
and the rescaling to units in float32.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger("replenish")

__all__ = ["build_model", "model_from_hparams", "architecture", "forward_fixed", "encode",
           "run_lstms", "decode", "Runner",
           "train", "evaluate", "pinball", "save_checkpoint", "load_checkpoint", "ARCH_KEYS"]

#: Version tag of the saved model folder.
FORMAT = "replenish-tft-1"

#: Hyperparameters that define the architecture (all JSON-serialisable).
ARCH_KEYS = (
    "hidden_size", "lstm_layers", "dropout", "output_size", "attention_head_size",
    "max_encoder_length", "static_categoricals", "static_reals",
    "time_varying_categoricals_encoder", "time_varying_categoricals_decoder",
    "categorical_groups", "time_varying_reals_encoder", "time_varying_reals_decoder",
    "x_reals", "x_categoricals", "hidden_continuous_size", "hidden_continuous_sizes",
    "embedding_sizes", "embedding_paddings", "share_single_variable_networks",
    "causal_attention", "mask_bias",
)


@contextlib.contextmanager
def _quiet_hparams():
    # Lightning's save_hyperparameters warns that the loss and metrics modules are saved
    # twice; they are rebuilt from JSON here, never read from a Lightning checkpoint.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Attribute '(loss|logging_metrics)' is an instance")
        yield


def _normalizer(target_transform: str | None):
    from pytorch_forecasting.data.encoders import EncoderNormalizer
    return EncoderNormalizer(method="standard", transformation=target_transform)


def build_model(dataset, quantiles: tuple[float, ...], hidden_size: int, attention_heads: int,
                dropout: float, hidden_continuous_size: int, lstm_layers: int = 1):
    """A fresh TemporalFusionTransformer for ``dataset`` with a QuantileLoss head."""
    from pytorch_forecasting import TemporalFusionTransformer
    from pytorch_forecasting.metrics import QuantileLoss
    with _quiet_hparams():
        return TemporalFusionTransformer.from_dataset(
            dataset, hidden_size=hidden_size, attention_head_size=attention_heads,
            dropout=dropout, hidden_continuous_size=hidden_continuous_size,
            lstm_layers=lstm_layers, loss=QuantileLoss(list(quantiles)),
            logging_metrics=nn.ModuleList([]), log_interval=-1)


def architecture(model) -> dict[str, Any]:
    """The JSON-serialisable hyperparameters that rebuild ``model``'s architecture."""
    hp = model.hparams
    arch = {k: hp[k] for k in ARCH_KEYS if k in hp}
    arch["embedding_sizes"] = {k: list(v) for k, v in arch["embedding_sizes"].items()}
    return json.loads(json.dumps(arch))


def model_from_hparams(arch: dict[str, Any], quantiles: list[float],
                       target_transform: str | None):
    """Rebuild a TemporalFusionTransformer from :func:`architecture` output (no dataset)."""
    from pytorch_forecasting import TemporalFusionTransformer
    from pytorch_forecasting.metrics import QuantileLoss
    arch = dict(arch)
    arch["embedding_sizes"] = {k: tuple(v) for k, v in arch["embedding_sizes"].items()}
    with _quiet_hparams():
        return TemporalFusionTransformer(
            **arch, loss=QuantileLoss(list(quantiles)), logging_metrics=nn.ModuleList([]),
            output_transformer=_normalizer(target_transform), log_interval=-1)


def _lstm(module: nn.LSTM, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
          lengths: torch.Tensor | None = None):
    """One LSTM in float32, outside autocast.

    Under CUDA autocast the cuDNN LSTM is cast to float16 whatever the autocast dtype (its
    autocast wrapper hard-codes half precision), and float16 gradients underflow without a
    gradient scaler; the LSTM here is small (one layer of ``hidden_size``), so it runs in
    float32 by choice. Without ``lengths`` it is the plain ``nn.LSTM`` forward (full-width
    windows need no packing); with them, pytorch-forecasting's packed LSTM.
    """
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        state = (state[0].float().contiguous(), state[1].float().contiguous())
        if lengths is None:
            return nn.LSTM.forward(module, x, state)
        return module(x, state, lengths=lengths, enforce_sorted=False)


def encode(model, x: dict[str, torch.Tensor], unique: bool = False):
    """The part of the forward before the LSTMs: embeddings, variable selection, static
    contexts. Returns ``(enc, dec, static, h0, c0)``; traceable as one graph
    (``unique=False``)."""
    hp = model.hparams
    enc_w = x["encoder_cont"].shape[1]
    x_cat = torch.cat([x["encoder_cat"], x["decoder_cat"]], 1)
    x_cont = torch.cat([x["encoder_cont"], x["decoder_cont"]], 1)
    b = x_cont.shape[0]
    # static inputs are constant over time: embed the first period only
    inputs = model.input_embeddings(x_cat if not unique else x_cat[:, :1])
    inputs.update({n: x_cont[..., i:i + 1] for i, n in enumerate(hp.x_reals) if n in model.reals})

    if len(model.static_variables) > 0:
        static, _ = model.static_variable_selection({n: inputs[n][:, 0]
                                                     for n in model.static_variables})
    else:
        static = x_cont.new_zeros(b, hp.hidden_size)
    ctx = model.static_context_variable_selection(static)[:, None]          # (B, 1, hidden)
    parts = []
    for vsn, names, sl in ((model.encoder_variable_selection, model.encoder_variables,
                            slice(None, enc_w)),
                           (model.decoder_variable_selection, model.decoder_variables,
                            slice(enc_w, None))):
        if unique and len(names) > 1:
            parts.append(_vsn_unique(model, vsn, x_cat[:, sl], x_cont[:, sl], ctx))
        else:
            steps = x_cont[:, sl].shape[1]
            parts.append(vsn({n: inputs[n][:, sl] for n in names},
                             ctx.expand(-1, steps, -1))[0])
    enc, dec = parts
    layers = hp.lstm_layers
    h0 = model.static_context_initial_hidden_lstm(static).expand(layers, -1, -1)
    c0 = model.static_context_initial_cell_lstm(static).expand(layers, -1, -1)
    return enc, dec, static, h0, c0


def run_lstms(model, enc: torch.Tensor, dec: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor,
              x: dict[str, torch.Tensor] | None = None):
    """Encoder and decoder LSTMs, float32 (see :func:`_lstm`); eager (Dynamo does not trace
    ``nn.LSTM``). ``x`` given: packed by its encoder/decoder lengths."""
    if x is None:
        enc_out, state = _lstm(model.lstm_encoder, enc, (h0, c0))
        dec_out, _ = _lstm(model.lstm_decoder, dec, state)
    else:
        enc_out, state = _lstm(model.lstm_encoder, enc, (h0, c0), x["encoder_lengths"])
        dec_out, _ = _lstm(model.lstm_decoder, dec, state, x["decoder_lengths"])
    return enc_out, dec_out


def decode(model, enc_out: torch.Tensor, dec_out: torch.Tensor, enc: torch.Tensor,
           dec: torch.Tensor, static: torch.Tensor, target_scale: torch.Tensor,
           target_transform: str | None,
           encoder_lengths: torch.Tensor | None = None) -> torch.Tensor:
    """The part after the LSTMs: gates, static enrichment, attention, output layer, rescaling.

    ``encoder_lengths`` given: padded encoder periods are masked (variable-length batches).
    The output layer and the rescaling to units run in float32 whatever the autocast
    setting (bfloat16 keeps 8 bits of mantissa: a normalised output of 3 rescaled by a
    window scale of 100 would be off by up to 1 unit). Traceable as one graph.
    """
    enc_w = enc_out.shape[1]
    lstm_enc = model.post_lstm_add_norm_encoder(model.post_lstm_gate_encoder(enc_out), enc)
    lstm_dec = model.post_lstm_add_norm_decoder(model.post_lstm_gate_decoder(dec_out), dec)
    lstm_out = torch.cat([lstm_enc, lstm_dec], 1)
    b, t_all = lstm_out.shape[:2]

    enrich = model.static_context_enrichment(static)[:, None]
    attn_in = _grn(model.static_enrichment, lstm_out, enrich)
    h = t_all - enc_w
    step = torch.arange(h, device=lstm_out.device)
    causal = step[None, :] >= step[:, None]          # decoder step j may not see steps >= j
    mask = torch.cat([causal.new_zeros(h, enc_w), causal], 1)                 # (H, T)
    if encoder_lengths is not None:   # padded encoder periods may not be attended: (B, 1, H, T)
        pad = torch.arange(enc_w, device=lstm_out.device) >= encoder_lengths[:, None]
        mask = mask | torch.cat([pad, pad.new_zeros(b, h)], 1)[:, None, None, :]
    attn_out = _attention(model.multihead_attn, attn_in[:, enc_w:], attn_in, mask)
    out = model.post_attn_gate_norm(attn_out, attn_in[:, enc_w:])
    out = model.pos_wise_ff(out)
    out = model.pre_output_gate_norm(out, lstm_dec)
    with torch.autocast(out.device.type, enabled=False):
        out = model.output_layer(out.float())
        return rescale(out, target_scale.float(), target_transform)


def forward_fixed(model, x: dict[str, torch.Tensor], target_transform: str | None,
                  unique: bool = False, variable: bool = False) -> torch.Tensor:
    """Quantile forecasts of a batch of windows, shape (B, H, Q), units per period.

    Same result as ``model(x)["prediction"]`` (not sorted or clipped):
    :func:`encode`, :func:`run_lstms`, :func:`decode`. With ``variable=False`` every encoder
    must have the batch's full width: only ``encoder_cat/cont``, ``decoder_cat/cont`` and
    ``target_scale`` are read, nothing waits for the host. ``variable=True`` handles shorter
    encoders (right-padded, the width being the longest) as the stock forward does: packed
    LSTMs and a padding mask, which read ``encoder_lengths`` on the host.

    ``unique=True`` (CPU): each time-varying input's single-variable network runs once per
    distinct value in the batch and the results are gathered back, which is the same
    function (identical in eval mode) at a fraction of the cost, because most inputs
    (calendar, flags, promotions, prices) take few distinct values. In training, dropout
    inside those networks is then shared by the rows with the same value. It synchronises
    with the host (``torch.unique``), so GPUs use the plain path.
    """
    enc, dec, static, h0, c0 = encode(model, x, unique)
    enc_out, dec_out = run_lstms(model, enc, dec, h0, c0, x if variable else None)
    return decode(model, enc_out, dec_out, enc, dec, static, x["target_scale"], target_transform,
                  x["encoder_lengths"] if variable else None)


def _vsn_unique(model, vsn, x_cat: torch.Tensor, x_cont: torch.Tensor,
                context: torch.Tensor) -> torch.Tensor:
    """``VariableSelectionNetwork.forward`` (two or more inputs), per distinct input value."""
    hp = model.hparams
    codes, weight_inputs = [], []
    for name in vsn.input_sizes:
        if name in vsn.prescalers:
            values, inverse = torch.unique(x_cont[..., hp.x_reals.index(name)],
                                           return_inverse=True)
            emb = vsn.prescalers[name](values[:, None])
        else:
            values, inverse = torch.unique(x_cat[..., hp.x_categoricals.index(name)],
                                           return_inverse=True)
            emb = model.input_embeddings.embeddings[name](values)   # keeps padding_idx
        codes.append((name, emb, inverse.flatten()))
        weight_inputs.append(emb.index_select(0, inverse.flatten()))
    shape = x_cont.shape[:-1]
    weights = vsn.softmax(_grn(vsn.flattened_grn,
                               torch.cat(weight_inputs, -1).view(*shape, -1), context))
    # sum_v weight_v * output_v, accumulated: cheaper on CPU than stacking (N, hidden, V)
    out = 0
    for v, (name, emb, inverse) in enumerate(codes):
        table = vsn.single_variable_grns[name](emb)
        out = out + table.index_select(0, inverse).view(*shape, -1) * weights[..., v:v + 1]
    return out


def _grn(grn, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
    """``GatedResidualNetwork.forward`` with a context that broadcasts over time.

    A static context of shape (B, 1, C) goes through the context layer once per window
    instead of once per period.
    """
    residual = x
    if grn.input_size != grn.output_size and not grn.residual:
        residual = grn.resample_norm(residual)
    h = grn.fc1(x)
    if context is not None:
        h = h + grn.context(context)
    return grn.gate_norm(grn.fc2(grn.elu(h)), residual)


def _attention(mha, q: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``InterpretableMultiHeadAttention.forward`` with all heads in one batched product.

    q (B, H, d_model) attends over kv (B, T, d_model); ``mask`` (H, T) is True where not
    allowed. Returns (B, H, d_model); the attention weights are not returned.
    """
    heads, d = mha.n_head, mha.d_k
    wq = torch.cat([lin.weight for lin in mha.q_layers])            # (heads * d, d_model)
    bq = torch.cat([lin.bias for lin in mha.q_layers])
    wk = torch.cat([lin.weight for lin in mha.k_layers])
    bk = torch.cat([lin.bias for lin in mha.k_layers])
    b, hq, t = q.shape[0], q.shape[1], kv.shape[1]
    qs = torch.nn.functional.linear(q, wq, bq).view(b, hq, heads, d).transpose(1, 2)
    ks = torch.nn.functional.linear(kv, wk, bk).view(b, t, heads, d).transpose(1, 2)
    vs = mha.v_layer(kv)                                            # (B, T, d), shared
    scores = torch.matmul(qs * d ** -0.5, ks.transpose(-1, -2))    # (B, heads, H, T)
    # additive mask: after the softmax the same as masked_fill(mask_bias), but cheaper
    scores = scores + mask.to(scores.dtype) * mha.mask_bias
    weights = torch.softmax(scores, -1)
    head = mha.dropout(torch.matmul(weights.view(b, heads * hq, t), vs).view(b, heads, hq, d))
    out = head.mean(1) if heads > 1 else head[:, 0]
    return mha.dropout(mha.w_h(out))


def rescale(out: torch.Tensor, target_scale: torch.Tensor,
            target_transform: str | None) -> torch.Tensor:
    """Normalised network output (B, H, Q) -> units per period (EncoderNormalizer inverse)."""
    from pytorch_forecasting.data.encoders import TorchNormalizer
    y = out * target_scale[:, 1, None, None] + target_scale[:, 0, None, None]
    if target_transform:
        y = TorchNormalizer.get_transform(target_transform)["reverse"](y)
    return y


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor],
                    meta: dict[str, Any]) -> None:
    """A model folder: ``weights.pt`` (tensors only) and ``model.json`` (everything else).

    Both files are written to temporary names first and renamed, so a reader never sees a
    half-written model.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "weights.pt.tmp"
    torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, tmp)
    tmp.replace(path / "weights.pt")
    tmp = path / "model.json.tmp"
    tmp.write_text(json.dumps({"format": FORMAT, **meta}, indent=1))
    tmp.replace(path / "model.json")


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Inverse of :func:`save_checkpoint`; safe: ``torch.load(weights_only=True)`` + JSON."""
    path = Path(path)
    try:
        meta = json.loads((path / "model.json").read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a replenish forecaster folder (model.json: {e})") from e
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a replenish forecaster folder (format "
                         f"{meta.get('format')!r}, expected {FORMAT!r})")
    state = torch.load(path / "weights.pt", map_location="cpu", weights_only=True)
    return state, meta


# ---- running the model -----------------------------------------------------------------------
def pinball(pred: torch.Tensor, target: torch.Tensor, levels: torch.Tensor,
            weight: torch.Tensor | None = None, known: torch.Tensor | None = None
            ) -> torch.Tensor:
    """Mean pinball loss of (B, H, Q) quantile forecasts against (B, H) actuals.

    ``weight`` (B,) rescales each window (e.g. 1 / its demand level) so that large series
    do not dominate a global model's loss. ``known`` (B, H) bool: the actuals that are
    targets (unknown periods are not); the mean is over those.
    """
    e = target[..., None] - pred.float()
    loss = torch.maximum(levels * e, (levels - 1) * e)
    if weight is not None:
        loss = loss * weight[:, None, None]
    if known is None:
        return loss.mean()
    return (loss * known[..., None]).sum() / (known.sum() * loss.shape[-1]).clamp(min=1)


def window_weight(x: dict[str, torch.Tensor], floor: float) -> torch.Tensor:
    """1 / (mean absolute encoder demand + floor), per window, shape (B,) (unknown periods
    count as zero demand)."""
    level = x["encoder_target"].abs().sum(1) / x["encoder_lengths"].clamp(min=1)
    return 1.0 / (level + floor)


#: Recompiles allowed per compiled region (each shape and train/eval mode is one graph; the
#: training batch, the prediction batch and both modes make at most 4).
RECOMPILE_LIMIT = 8


class Runner:
    """Runs a TFT on windows of a sampler: the fixed-length path for full-width batches.

    Parameters
    ----------
    model : TemporalFusionTransformer
    target_transform : str or None
        The EncoderNormalizer transformation (for :func:`rescale`).
    device : torch.device
    autocast_dtype : torch.dtype or None
        bfloat16 on GPUs; None for float32. Never float16 (no gradient scaler here).
    compile : bool
        Compile :func:`encode` and :func:`decode` (``torch.compile``, static shapes, one
        graph each); the LSTMs between them stay eager.
    compile_backend : str or callable
        ``torch.compile``'s backend (tests count graphs with a counting backend).
    """

    def __init__(self, model, target_transform: str | None, device: torch.device,
                 autocast_dtype: torch.dtype | None = None, compile: bool = False,
                 compile_backend: Any = "inductor"):
        if autocast_dtype not in (None, torch.bfloat16, torch.float32):
            raise ValueError(f"autocast dtype {autocast_dtype} not supported: bfloat16 or None "
                             f"(float16 would need a gradient scaler)")
        self.model, self.transform, self.device = model, target_transform, device
        self.autocast_dtype = autocast_dtype
        self.unique = device.type == "cpu" and not compile
        self.compiled = bool(compile)
        if compile:
            from torch import _dynamo
            cfg = _dynamo.config
            limit = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
            setattr(cfg, limit, max(getattr(cfg, limit), RECOMPILE_LIMIT))
            self.encode = torch.compile(encode, fullgraph=True, dynamic=False,
                                        backend=compile_backend)
            self.decode = torch.compile(decode, fullgraph=True, dynamic=False,
                                        backend=compile_backend)
        else:
            self.encode, self.decode = encode, decode
        #: seconds spent in the first call of each compiled shape (compilation included)
        self.first_call_seconds: dict[tuple, float] = {}

    def _fixed(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        enc, dec, static, h0, c0 = self.encode(self.model, x, self.unique)
        enc_out, dec_out = run_lstms(self.model, enc, dec, h0, c0)
        return self.decode(self.model, enc_out, dec_out, enc, dec, static, x["target_scale"],
                           self.transform)

    def forward(self, x: dict[str, torch.Tensor], full_width: bool) -> torch.Tensor:
        """Quantile forecasts (B, H, Q), float32, units per period (unsorted, unclipped)."""
        ctx = torch.autocast(self.device.type, dtype=self.autocast_dtype) \
            if self.autocast_dtype is not None else contextlib.nullcontext()
        with ctx:
            if full_width:
                key = (tuple(x["encoder_cont"].shape), self.model.training)
                if self.compiled and key not in self.first_call_seconds:
                    t0 = time.perf_counter()
                    out = self._fixed(x)
                    self.first_call_seconds[key] = time.perf_counter() - t0
                    log.info("compiled the forward for batches of shape %s (%s mode) in %.1f s",
                             key[0], "training" if key[1] else "eval", self.first_call_seconds[key])
                else:
                    out = self._fixed(x)
            else:   # shorter encoders: packed LSTMs, eager
                out = forward_fixed(self.model, x, self.transform, self.unique, variable=True)
        return out.float()

    def predict(self, sampler, series: np.ndarray, dec_start: np.ndarray, enc_len: np.ndarray,
                batch_size: int, luts, pad_batches: bool | None = None):
        """Yield (positions, batch, forecasts (b, H, Q)) of windows, full-width ones together.

        With ``pad_batches`` (default: when compiled) a short full-width batch is padded to
        ``batch_size`` windows, so that a compiled graph keeps one static shape. The window
        coordinates go to the sampler's device once; each batch is then a slice of them,
        gathered where the panel arrays live (on the GPU when the sampler is there: no
        host work or copy per batch).
        """
        pad_batches = self.compiled if pad_batches is None else pad_batches
        L = sampler.spec.encoder_length
        full = enc_len == L
        dev = sampler.device
        for mask, width in ((full, L), (~full, None)):
            pos = np.flatnonzero(mask)
            if not len(pos):
                continue
            take = pos
            if pad_batches and width is not None and len(pos) % batch_size:
                take = np.concatenate([pos, np.full(batch_size - len(pos) % batch_size, pos[-1])])
            coords = [torch.as_tensor(np.ascontiguousarray(a[take]), device=dev)
                      for a in (series, dec_start, enc_len)]
            for i in range(0, len(pos), batch_size):
                p = pos[i:i + batch_size]
                sl = slice(i, i + batch_size) if width is not None and pad_batches \
                    else slice(i, i + len(p))
                w = width if width is not None else int(enc_len[p].max())
                x = sampler.windows(*(c[sl] for c in coords), w, device=self.device, luts=luts)
                yield p, x, self.forward(x, width is not None)[:len(p)]


class _LazyLoss:
    """The running mean training loss, read from the device only when converted."""

    def __init__(self, total, n):
        self.total, self.n = total, n

    def __float__(self) -> float:
        return float(self.total) / max(self.n, 1) if self.total is not None else float("nan")


def train(runner: Runner, sampler, plan, levels: torch.Tensor, *, steps: int, batch_size: int,
          learning_rate: float, time_budget_s: float | None, val_every: int, patience: int,
          short_fraction: float, grad_clip: float, loss_floor: float | None, seed: int,
          val_series: int, predict_batch_size: int, luts, progress=None) -> dict:
    """Train ``runner.model`` in place with Adam and a cosine learning-rate decay.

    Every ``val_every`` steps the pinball loss on the validation windows is measured; the
    best weights are kept and restored at the end; training stops after ``patience``
    validations without improvement, after ``steps`` steps or after ``time_budget_s``
    seconds (the only non-reproducible stop). ``loss_floor`` None: loss in units of demand
    (pytorch-forecasting's choice); a number: each window's loss divided by its mean
    absolute encoder demand plus ``loss_floor`` units. ``progress``: called as
    ``progress(step, steps, loss, best, elapsed, budget_s, validated=, done=)`` after every
    step (it decides how often to show anything; the loss is read from the device only
    when it asks, see ``jobs._progress.training_reporter``).

    Returns
    -------
    dict
        The training history (losses, steps, samples per second, why it stopped).
    """
    model, dev = runner.model, runner.device
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate,
                           **({"fused": True} if dev.type in ("cpu", "cuda") else {}))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(i, steps) / max(steps, 1))))
    val = plan.validation(rng, val_series)
    # (elapsed_s: seconds since the start at each recorded step, for a progress display)
    hist: dict = {"train_loss": [], "val_loss": [], "elapsed_s": [], "best_step": 0,
                  "stopped": "max_steps", "max_steps": steps, "time_budget_s": time_budget_s}
    best, best_state, bad, run_loss, run_n = float("inf"), None, 0, None, 0
    t0 = t_warm = time.perf_counter()
    step = 0
    for step in range(1, steps + 1):
        model.train()
        s, d, e, w = plan.draw(rng, batch_size, short=rng.random() < short_fraction)
        x = sampler.windows(torch.as_tensor(s), torch.as_tensor(d), torch.as_tensor(e), w,
                            device=dev, luts=luts)
        pred = runner.forward(x, full_width=bool(w == plan.L and (e == w).all()))
        weight = window_weight(x, loss_floor) if loss_floor is not None else None
        loss = pinball(pred, x["decoder_target"], levels, weight, x.get("decoder_target_known"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        run_loss = loss.detach() if run_loss is None else run_loss + loss.detach()
        run_n += 1
        if step == 2:
            t_warm = time.perf_counter()      # steady-state speed excludes warm-up/compile
        over = time_budget_s is not None and time.perf_counter() - t0 > time_budget_s
        validating = step % val_every == 0 or step == steps or over
        if progress is not None and not validating:
            progress(step, steps, _LazyLoss(run_loss, run_n), None if best == float("inf") else best,
                     time.perf_counter() - t0, time_budget_s)
        if validating:
            hist["train_loss"].append((step, float(run_loss) / run_n))
            hist["elapsed_s"].append((step, round(time.perf_counter() - t0, 3)))
            run_loss, run_n = None, 0
            if len(val[0]):
                v = evaluate(runner, sampler, val, levels, loss_floor, predict_batch_size, luts)
                hist["val_loss"].append((step, v))
                log.info("step %d: train loss %.4f, validation loss %.4f", step,
                         hist["train_loss"][-1][1], v)
                if v < best:
                    best, bad, hist["best_step"] = v, 0, step
                    best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
                else:
                    bad += 1
                if progress is not None:
                    progress(step, steps, hist["train_loss"][-1][1], best, time.perf_counter() - t0,
                             time_budget_s, validated=True)
                if bad >= patience:
                    hist["stopped"] = "early_stopping"
                    break
        if over:
            hist["stopped"] = "time_budget"
            break
    seconds = time.perf_counter() - t0
    if progress is not None:
        last = hist["train_loss"][-1][1] if hist["train_loss"] else float("nan")
        progress(step, steps, last, None if best == float("inf") else best, seconds,
                 time_budget_s, done=True)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    steady = (step - 2) * batch_size / max(time.perf_counter() - t_warm, 1e-9) \
        if step > 2 else None
    hist.update(steps=step, samples=step * batch_size, train_seconds=seconds,
                samples_per_s=step * batch_size / max(seconds, 1e-9),
                steady_samples_per_s=steady,
                best_val_loss=None if best == float("inf") else best)
    return hist


@torch.no_grad()
def evaluate(runner: Runner, sampler, windows, levels: torch.Tensor, loss_floor: float | None,
             batch_size: int, luts) -> float:
    """Mean pinball loss over validation windows (same weighting as training), over their
    periods of known demand."""
    runner.model.eval()
    total, count = 0.0, 0
    for p, x, pred in runner.predict(sampler, *windows, batch_size, luts):
        n = len(p)   # a padded batch holds repeats after the first n windows
        weight = window_weight(x, loss_floor)[:n] if loss_floor is not None else None
        known = x["decoder_target_known"][:n]
        k = int(known.sum())
        total += float(pinball(pred, x["decoder_target"][:n], levels, weight, known)) * k
        count += k
    return total / max(count, 1)
