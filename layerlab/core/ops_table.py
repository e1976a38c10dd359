"""The table of supported ops: one ``OpSpec`` per ``torch.nn`` class of the allow-list.

Shape formulas live in :mod:`.shapes`, receptive windows in :mod:`.windows`; this module only
wires them to each op's parameters and hooks. :mod:`.specs` turns the table into ``OPS``.
"""

from __future__ import annotations

from . import shapes as sh
from . import windows as win
from .opspec import AFFINE_ONLY, NO_TENSORS, NORM, SEEDED, ChannelRule, OpSpec, P
from .windows import GLOBAL, RESHAPE

# --- the specs -------------------------------------------------------------------------------

_K = P("kernel_size", "pair", 2, "Window size: one number or [height, width].", 1, 256)
_POOL_STRIDE = P("stride", "opt_pair", None, "Step between windows; auto means the kernel "
                 "size.", 1, 256, none_label="auto", none_follows="kernel_size")
_POOL_PAD = P("padding", "pair", 0, "Implicit padding on every side (at most half the "
              "kernel).", 0, 128)
_CEIL = P("ceil_mode", "bool", False, "Round the output size up instead of down, keeping a "
          "partial window at the edge.")
_EPS = P("eps", "float", 1e-5, "Added to the variance for numerical stability.", 1e-12, 1.0)
_MOM = P("momentum", "float", 0.1, "Running-stat momentum (training only; no effect here).",
         0.0, 1.0)
_AFFINE = P("affine", "bool", True, "Learnable per-channel scale (weight) and shift (bias).")
_PAD4 = P("padding", "pad4", 1, "Pixels to add: one number or [left, right, top, bottom].",
          0, 1024)

OP_LIST: list[OpSpec] = [
    OpSpec("Conv2d", "convolution",
           "2-D convolution: each output channel sums kernels slid over all input channels.",
           (P("in_channels", "int", 1, "Channels of the input (1 gray, 3 RGB).", 1, 4096,
              from_input="channels"),
            P("out_channels", "int", 1, "Number of kernels, i.e. output feature maps.", 1,
              100000),
            P("kernel_size", "pair", 3, "Kernel size: one number or [height, width].", 1, 64),
            P("stride", "pair", 1, "Step of the kernel in pixels.", 1, 64),
            P("padding", "padding", 0, "Padding on each side: a number, a pair, 'same' or "
              "'valid'.", 0, 256, choices=("same", "valid")),
            P("dilation", "pair", 1, "Spacing between kernel taps (atrous convolution).", 1, 64),
            P("groups", "int", 1, "Split channels into groups (groups = in_channels is "
              "depthwise).", 1, 4096),
            P("bias", "bool", True, "Add a learnable bias per output channel."),
            P("padding_mode", "choice", "zeros", "How the padding is filled.",
              choices=("zeros", "reflect", "replicate", "circular"))),
           sh.infer_conv, sh.check_conv,
           receptive=win.sliding, init=SEEDED, kernel="weight",
           channels=ChannelRule("in_channels", weight_axis=1,
                                applies=lambda a: a["groups"] == 1)),
    OpSpec("MaxPool2d", "pooling", "Maximum over each window.",
           (_K, _POOL_STRIDE, _POOL_PAD,
            P("dilation", "pair", 1, "Spacing between window taps.", 1, 64), _CEIL),
           lambda s, a: sh.pool_common(s, a, dilation=True, avg=False), sh.check_pool_padding,
           receptive=win.sliding, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("AvgPool2d", "pooling", "Average over each window.",
           (_K, _POOL_STRIDE, _POOL_PAD, _CEIL,
            P("count_include_pad", "bool", True, "Count padded zeros in the average."),
            P("divisor_override", "opt_int", None, "Divide by this instead of the window "
              "size.", 1, 65536)),
           lambda s, a: sh.pool_common(s, a, dilation=False, avg=True), sh.check_pool_padding,
           receptive=win.sliding, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("AdaptiveAvgPool2d", "pooling", "Average pooling to a fixed output size.",
           (P("output_size", "pair", 1, "Output size: one number or [height, width].", 1,
              4096),), sh.infer_adaptive,
           receptive=win.adaptive, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("AdaptiveMaxPool2d", "pooling", "Max pooling to a fixed output size.",
           (P("output_size", "pair", 1, "Output size: one number or [height, width].", 1,
              4096),), sh.infer_adaptive,
           receptive=win.adaptive, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("LPPool2d", "pooling", "Power-average pooling: (sum x^p)^(1/p) over each window.",
           (P("norm_type", "float", 2.0, "The power p (1 = sum pooling, large = max).", 0.1,
              100.0), _K, _POOL_STRIDE, _CEIL),
           lambda s, a: sh.pool_common(s, a, dilation=False, avg=True),
           receptive=win.sliding, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("ZeroPad2d", "padding", "Pad with zeros.", (_PAD4,), sh.infer_pad,
           receptive=win.shifted, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("ReflectionPad2d", "padding", "Pad by mirroring the border (edge not repeated).",
           (_PAD4,), sh.infer_reflection_pad,
           receptive=win.reflected, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("ReplicationPad2d", "padding", "Pad by repeating the edge pixels.", (_PAD4,),
           sh.infer_pad,
           receptive=win.replicated, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("ConstantPad2d", "padding", "Pad with a constant value.",
           (_PAD4, P("value", "float", 0.0, "The fill value.", -1e6, 1e6)), sh.infer_pad,
           receptive=win.shifted, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("ReLU", "activation", "max(0, x).", (), sh.same, spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("LeakyReLU", "activation", "x if x > 0 else slope * x.",
           (P("negative_slope", "float", 0.01, "Slope for negative inputs.", -10.0, 10.0),),
           sh.same, spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("ELU", "activation", "x if x > 0 else alpha * (exp(x) - 1).",
           (P("alpha", "float", 1.0, "Saturation value for negative inputs.", 0.0, 100.0),),
           sh.same, spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("GELU", "activation", "x * Phi(x), the Gaussian error linear unit.",
           (P("approximate", "choice", "none", "Exact erf form or the tanh approximation.",
              choices=("none", "tanh")),), sh.same, spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("SiLU", "activation", "x * sigmoid(x) (swish).", (), sh.same, spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Sigmoid", "activation", "1 / (1 + exp(-x)), squashes to (0, 1).", (), sh.same,
           spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Tanh", "activation", "tanh(x), squashes to (-1, 1).", (), sh.same, spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Softplus", "activation", "log(1 + exp(beta x)) / beta, a smooth ReLU.",
           (P("beta", "float", 1.0, "Sharpness.", 0.01, 100.0),
            P("threshold", "float", 20.0, "Above beta*x > threshold the layer is linear.", 0.0,
              1000.0)), sh.same, spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Hardtanh", "activation", "Clamp to [min_val, max_val].",
           (P("min_val", "float", -1.0, "Lower clamp.", -1e6, 1e6),
            P("max_val", "float", 1.0, "Upper clamp.", -1e6, 1e6)), sh.same, sh.check_hardtanh,
           spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Softmax2d", "activation", "Softmax over the channels at each pixel.", (),
           sh.infer_softmax2d,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("BatchNorm2d", "normalization",
           "Per-channel (x - running_mean) / sqrt(running_var + eps) * weight + bias "
           "(evaluation mode: running statistics).",
           (P("num_features", "int", 1, "Channels of the input.", 1, 100000,
              from_input="channels"), _EPS, _MOM, _AFFINE,
            P("track_running_stats", "bool", True, "Use running statistics (mean 0, var 1 "
              "unless given); off: normalise by this image's statistics.")),
           sh.infer_batchnorm,
           receptive=win.pointwise, init=NORM, channels=ChannelRule("num_features"),
           kernel=None),
    OpSpec("InstanceNorm2d", "normalization",
           "Normalise each channel of the image by its own mean and variance.",
           (P("num_features", "int", 1, "Channels of the input.", 1, 100000,
              from_input="channels"), _EPS, _MOM,
            P("affine", "bool", False, "Learnable per-channel scale and shift."),
            P("track_running_stats", "bool", False, "Use running statistics instead.")),
           sh.infer_instancenorm,
           receptive=GLOBAL, init=NORM, channels=ChannelRule("num_features"),
           kernel=None),
    OpSpec("GroupNorm", "normalization", "Normalise over groups of channels.",
           (P("num_groups", "int", 1, "Number of channel groups.", 1, 100000),
            P("num_channels", "int", 1, "Channels of the input.", 1, 100000,
              from_input="channels"), _EPS, _AFFINE),
           sh.infer_groupnorm, sh.check_groupnorm,
           receptive=GLOBAL, init=AFFINE_ONLY, channels=ChannelRule("num_channels"),
           kernel=None),
    OpSpec("LayerNorm", "normalization", "Normalise over the last dimensions.",
           (P("normalized_shape", "ints", [1], "The trailing dimensions to normalise over, "
              "e.g. [C, H, W].", 1, 1 << 24, from_input="chw"), _EPS,
            P("elementwise_affine", "bool", True, "Learnable elementwise scale and shift."),
            P("bias", "bool", True, "Learnable shift (with elementwise_affine).")),
           sh.infer_layernorm, sh.check_layernorm, spatial=False,
           receptive=GLOBAL, init=AFFINE_ONLY, channels=None, kernel=None),
    OpSpec("LocalResponseNorm", "normalization",
           "Divide each value by a power of the summed squares of neighbouring channels.",
           (P("size", "int", 5, "Neighbouring channels used.", 1, 4096),
            P("alpha", "float", 1e-4, "Multiplicative factor.", 0.0, 100.0),
            P("beta", "float", 0.75, "Exponent.", 0.0, 100.0),
            P("k", "float", 1.0, "Additive factor.", 0.0, 100.0)), sh.same,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Dropout", "other", "Random zeroing during training; identity here "
           "(evaluation mode).", (P("p", "float", 0.5, "Drop probability (training only).",
                                    0.0, 1.0),), sh.same, spatial=False, eval_identity=True,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Dropout2d", "other", "Random channel zeroing during training; identity here "
           "(evaluation mode).", (P("p", "float", 0.5, "Drop probability (training only).",
                                    0.0, 1.0),), sh.same, eval_identity=True,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Upsample", "other", "Resize by a factor or to a size.",
           (P("size", "opt_pair", None, "Output size [height, width]; or use scale_factor.",
              1, 16384),
            P("scale_factor", "opt_float", 2.0, "Resize factor.", 0.01, 64.0,
              null_if_given="size"),
            P("mode", "choice", "nearest", "Interpolation.",
              choices=("nearest", "nearest-exact", "bilinear", "bicubic")),
            P("align_corners", "opt_bool", None, "Align corner pixels (bilinear/bicubic).")),
           sh.infer_upsample, sh.check_upsample,
           receptive=win.resampled, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Flatten", "other", "Merge dimensions into one vector (C x H x W -> C*H*W).",
           (P("start_dim", "int", 1, "First dimension merged (1 = channels).", -4, 3),
            P("end_dim", "int", -1, "Last dimension merged (-1 = the last).", -4, 3)),
           sh.infer_flatten, spatial=False,
           receptive=RESHAPE, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Linear", "other", "Fully connected: y = x A^T + b on the last dimension.",
           (P("in_features", "int", 1, "Size of the input's last dimension.", 1, 1 << 24,
              from_input="features"),
            P("out_features", "int", 10, "Output size.", 1, 1 << 20),
            P("bias", "bool", True, "Add a learnable bias.")),
           sh.infer_linear, spatial=False,
           receptive=GLOBAL, init=SEEDED, channels=None, kernel=None),
]

