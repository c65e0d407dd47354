"""An independent computation of the reference DEEN, written from the spec, for the tests.

It works on *reference-named* tensors (``base_resnet.base.layer1.0.conv1.weight`` …, from
``data/official-state-dict-keys.txt``) with functional ops only, sharing no code with the
``deen`` package, so that a test comparing the two checks the package against the spec and
not against itself. It follows the reference evaluation: one modality per call, eval-mode
BN, and the test loop's flip-sum.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

KEYS_FILE = Path(__file__).parent / "data" / "official-state-dict-keys.txt"
KEY_VARIANT = {"sysu": "sysu-llcm", "llcm": "sysu-llcm", "regdb": "regdb"}


def reference_tensor_specs(variant: str) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, shape, used) for every tensor of a reference checkpoint of ``variant``."""
    specs = []
    for line in KEYS_FILE.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        tag, name, rest = line.split(" ", 2)
        shape_text, usage = rest.rsplit(" ", 1)
        if tag == KEY_VARIANT[variant]:
            specs.append((name, tuple(ast.literal_eval(shape_text)), usage == "used"))
    return specs


def make_reference_state(variant: str, calibration: dict[str, torch.Tensor],
                         num_classes: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random reference-format weights: He-normal convolutions, BN affine parameters far from
    (1, 0) (MFA output BNs included, which start at 0 in training), and BN running statistics
    calibrated on a forward pass over ``calibration`` ("visible"/"infrared" → normalised
    N×3×384×144 images), so activations stay O(1) on images like those. (MFA has no softmax,
    so its output grows with the cube of its input's scale: BN statistics that do not fit the
    images, e.g. calibrated on noise, blow activations up — as they would in a real model.)"""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, shape, _ in reference_tensor_specs(variant):
        if name == "classifier.weight" and num_classes is not None:
            shape = (num_classes, shape[1])
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1234)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=gen) * 1.5 + 0.5
        elif name.endswith("running_mean"):
            state[name] = torch.randn(shape, generator=gen) * 0.2
        elif len(shape) == 4:  # conv: He-normal
            fan_in = shape[1] * shape[2] * shape[3]
            state[name] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif ".W.1." in name and name.endswith(".weight"):  # MFA output BN: 0 at init
            state[name] = torch.rand(shape, generator=gen) * 0.1 + 0.05
        elif name.endswith(".weight") and len(shape) == 1:  # BN / BN1d scale
            state[name] = torch.rand(shape, generator=gen) * 0.8 + 0.4
        elif name.endswith(".bias"):
            state[name] = torch.randn(shape, generator=gen) * 0.1
        else:  # classifier
            state[name] = torch.randn(shape, generator=gen) * 0.01
    calibrate_batchnorm(state, variant, calibration, seed)
    return state


def calibrate_batchnorm(state: dict[str, torch.Tensor], variant: str,
                        calibration: dict[str, torch.Tensor], seed: int = 0) -> None:
    """Give every BN running statistics close to (not equal to) those of the activations it
    sees, as training would, so that the random network stays alive and BN is far from the
    identity. Each stem is calibrated on its own modality's images."""
    global _CALIBRATION
    gen = torch.Generator().manual_seed(seed + 1)
    _CALIBRATION = {"generator": gen, "done": set()}
    try:
        with torch.no_grad():
            stems = [_stem(calibration[modal], state, modal) for modal in ("visible", "infrared")]
            _body_and_head(torch.cat(stems), state, variant)  # as in training: [vis; ir]
    finally:
        _CALIBRATION = None


def save_reference_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> None:
    """As the reference training script saves: numpy metadata beside ``net``."""
    torch.save({"net": state, "cmc": np.linspace(0.5, 1.0, 20), "mAP": np.float64(0.61),
                "mINP": np.float64(0.42), "epoch": 37}, path)


# --- the forward pass, from the spec -------------------------------------------------------

def _conv(x, s, p, stride=1, padding=0, dilation=1):
    return F.conv2d(x, s[p + ".weight"], s.get(p + ".bias"), stride, padding, dilation)


#: While set, each BN not yet seen takes its running statistics from the batch it
#: normalises (perturbed by the generator): see :func:`calibrate_batchnorm`.
_CALIBRATION: dict[str, object] | None = None


def _bn(x, s, p):
    if _CALIBRATION is not None and p not in _CALIBRATION["done"]:
        gen = _CALIBRATION["generator"]
        dims = [0, 2, 3] if x.ndim == 4 else [0]
        mean, var = x.mean(dims), x.var(dims)
        noise = torch.randn(mean.shape, generator=gen) * 0.1 * var.sqrt()
        s[p + ".running_mean"] = mean + noise
        s[p + ".running_var"] = var * (torch.rand(var.shape, generator=gen) * 0.6 + 0.7) + 1e-3
        _CALIBRATION["done"].add(p)
    return F.batch_norm(x, s[p + ".running_mean"], s[p + ".running_var"], s[p + ".weight"],
                        s[p + ".bias"], training=False, momentum=0.0, eps=1e-5)


def _bottleneck(x, s, p, stride):
    out = F.relu(_bn(_conv(x, s, p + ".conv1"), s, p + ".bn1"))
    out = F.relu(_bn(_conv(out, s, p + ".conv2", stride=stride, padding=1), s, p + ".bn2"))
    out = _bn(_conv(out, s, p + ".conv3"), s, p + ".bn3")
    if p + ".downsample.0.weight" in s:
        x = _bn(_conv(x, s, p + ".downsample.0", stride=stride), s, p + ".downsample.1")
    return F.relu(out + x)


def _layer(x, s, n, stride):
    i = 0
    while f"base_resnet.base.layer{n}.{i}.conv1.weight" in s:
        x = _bottleneck(x, s, f"base_resnet.base.layer{n}.{i}", stride if i == 0 else 1)
        i += 1
    return x


def _cnl(xh, xl, s, p, flag):
    stride = 1 if flag == 0 else 2
    b, cl = xl.shape[:2]
    g_x = _conv(xl, s, p + ".g").view(b, cl, -1)
    theta_x = _conv(xh, s, p + ".theta").view(b, cl, -1)
    phi_x = _conv(xl, s, p + ".phi", stride=stride).view(b, cl, -1).permute(0, 2, 1)
    f = torch.matmul(theta_x, phi_x)
    f_div_c = f / f.size(-1)
    y = torch.matmul(f_div_c, g_x).view(b, cl, *xl.size()[2:])
    return _bn(_conv(y, s, p + ".W.0", stride=stride), s, p + ".W.1") + xh


def _pnl(xh, xl, s, p, reduc_ratio=2):
    b, cl = xl.shape[:2]
    g_x = _conv(xl, s, p + ".g").view(b, cl, -1).permute(0, 2, 1)
    theta_x = _conv(xh, s, p + ".theta").view(b, cl, -1).permute(0, 2, 1)
    phi_x = _conv(xl, s, p + ".phi").view(b, cl, -1)
    f = torch.matmul(theta_x, phi_x)
    f_div_c = f / f.size(-1)
    y = torch.matmul(f_div_c, g_x).permute(0, 2, 1).contiguous()
    y = y.view(b, cl // reduc_ratio, *xh.size()[2:])
    return _bn(_conv(y, s, p + ".W.0"), s, p + ".W.1") + xh


def _mfa(xh, xl, s, n, flag):
    return _pnl(_cnl(xh, xl, s, f"MFA{n}.CNL", flag), xl, s, f"MFA{n}.PNL")


def _dee(x, s):
    rows = [x]
    for i in (1, 2):
        x1 = F.conv2d(x, s[f"DEE.FC{i}1.weight"], None, 1, 1, 1)
        x2 = F.conv2d(x, s[f"DEE.FC{i}2.weight"], None, 1, 2, 2)
        x3 = F.conv2d(x, s[f"DEE.FC{i}3.weight"], None, 1, 3, 3)
        rows.append(_conv(F.relu((x1 + x2 + x3) / 3), s, f"DEE.FC{i}"))
    return torch.cat(rows, 0)


def _stem(x, s, modal: str):
    stem = "visible_module.visible" if modal == "visible" else "thermal_module.thermal"
    x = _bn(_conv(x, s, stem + ".conv1", stride=2, padding=3), s, stem + ".bn1")
    return F.max_pool2d(F.relu(x), 3, 2, 1)


def _body_and_head(x0, s, variant: str):
    x1 = _mfa(_layer(x0, s, 1, 1), x0, s, 1, flag=0)
    x2 = _mfa(_layer(x1, s, 2, 2), x1, s, 2, flag=1)
    if variant == "regdb":
        x = _layer(_dee(x2, s), s, 3, 2)
    else:
        x3 = _mfa(_layer(x2, s, 3, 2), x2, s, 3, flag=1)
        x = _layer(_dee(x3, s), s, 4, 1)
    pool = x.mean(dim=(2, 3))
    feat = _bn(pool, s, "bottleneck")
    return pool, feat


@torch.no_grad()
def reference_eval_forward(s, x, modal: str, variant: str):
    """Eval-mode output for a single-modality batch: (normalised pool, normalised feat)."""
    pool, feat = _body_and_head(_stem(x, s, modal), s, variant)
    return pool / pool.norm(2, 1, keepdim=True), feat / feat.norm(2, 1, keepdim=True)


def reference_test_features(s, x, modal: str, variant: str, flip: bool = True):
    """The reference test loop: features of x plus features of its horizontal flip, split
    into the three DEE outputs. Returns (P, Q), each 3 × N × D."""
    pool, feat = reference_eval_forward(s, x, modal, variant)
    if flip:
        pool_f, feat_f = reference_eval_forward(s, torch.flip(x, [3]), modal, variant)
        pool, feat = pool + pool_f, feat + feat_f
    n = x.shape[0]
    return pool.view(3, n, -1), feat.view(3, n, -1)


def reference_similarity(query, gallery, a: float | None = None):
    """S (or S_a) between every query and gallery image, from (P, Q) feature triples."""
    (pq, qq), (pg, qg) = query, gallery
    s_pool = sum(pq[k] @ pg[k].T for k in range(3))
    s_feat = sum(qq[k] @ qg[k].T for k in range(3))
    if a is None:
        return s_pool + s_feat
    return a * s_pool + (1 - a) * s_feat
