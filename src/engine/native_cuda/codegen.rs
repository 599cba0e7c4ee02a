//! The CUDA source of a network: `kernels/mlp.cu` (fp32, one thread per
//! row) or `kernels/mlp_tc.cu` (tensor cores) with a generated body holding
//! the dimensions, weights and activations, and its compilation to PTX.
//! Needs NVRTC, not a GPU.

use crate::engine::native::Dense;
use crate::Error;

pub const MLP_SOURCE: &str = include_str!("../../../kernels/mlp.cu");

/// Networks with at most this many weights and biases are generated as
/// straight-line code with literal weights; larger ones as loops over a
/// weight buffer (the code would grow past the instruction cache).
pub const LITERAL_LIMIT: usize = 8_192;

/// How the network's weights reach the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Straight-line code, weights as literals (the parameter buffer unused).
    Literal,
    /// DENSE loops over the parameter buffer.
    Looped,
}

impl Form {
    pub fn for_layers(layers: &[Dense]) -> Form {
        if layers.iter().map(|l| l.w.len() + l.b.len()).sum::<usize>() <= LITERAL_LIMIT {
            Form::Literal
        } else {
            Form::Looped
        }
    }
}

/// A float as a CUDA literal that reads back to the same f32.
fn lit(x: f32) -> String {
    format!("{x:.9e}f")
}

/// The CUDA source of the kernels for `layers` in `form`, and the flat
/// parameter buffer they read (empty for [`Form::Literal`]).
pub fn kernel_source(layers: &[Dense], form: Form) -> (String, Vec<f32>) {
    let (row, params) = row_source(layers, form);
    let entries = MLP_SOURCE.split_once("// @network").map_or("", |(_, tail)| tail);
    (row + entries, params)
}

/// The device part of [`kernel_source`] alone: the activation functions and
/// `mlp_row`, with no CUDA-only construct but `__device__`,
/// `__forceinline__` and `__ldg`, so a host C compiler can check the
/// generated arithmetic against the CPU engine (the tests do).
pub fn row_source(layers: &[Dense], form: Form) -> (String, Vec<f32>) {
    let n_in = layers[0].d_in;
    let n_out = layers.last().expect("layers").d_out;
    let mut params = Vec::new();
    let mut body = format!("#define N_IN {n_in}\n#define N_OUT {n_out}\n__device__ __forceinline__ void mlp_row(const float* __restrict__ p, const float* a0, float* out) {{\n");
    match form {
        Form::Literal => {
            // h{l}_{j}: output j of layer l (h0_k are the inputs)
            for k in 0..n_in {
                body += &format!("    const float h0_{k} = a0[{k}];\n");
            }
            for (l, d) in layers.iter().enumerate() {
                let (prev, cur) = (l, l + 1);
                for j in 0..d.d_out {
                    body += &format!("    float s{cur}_{j} = {};\n", lit(d.b[j]));
                    for k in 0..d.d_in {
                        body += &format!("    s{cur}_{j} = fmaf(h{prev}_{k}, {}, s{cur}_{j});\n", lit(d.w[k * d.d_out + j]));
                    }
                    body += &format!("    const float h{cur}_{j} = act_{}(s{cur}_{j}, {});\n", d.act, lit(d.param));
                }
            }
            for j in 0..n_out {
                body += &format!("    out[{j}] = h{}_{j};\n", layers.len());
            }
        }
        Form::Looped => {
            body += "    const float* h0 = a0;\n";
            for (i, l) in layers.iter().enumerate() {
                let (w, b) = (params.len(), params.len() + l.w.len());
                params.extend_from_slice(&l.w);
                params.extend_from_slice(&l.b);
                body += &format!("    float h{}[{}];\n    DENSE({}, {}, h{i}, h{}, (p + {w}), (p + {b}), act_{}, {})\n", i + 1, l.d_out, l.d_in, l.d_out, i + 1, l.act, lit(l.param));
            }
            body += &format!("    for (int i = 0; i < N_OUT; ++i) out[i] = h{}[i];\n", layers.len());
        }
    }
    body += "}\n";
    let head = MLP_SOURCE.split_once("// @network").map_or(MLP_SOURCE, |(head, _)| head);
    (format!("{head}{body}"), params)
}

pub const MLP_TC_SOURCE: &str = include_str!("../../../kernels/mlp_tc.cu");

/// Warps per block of the tensor-core kernel (16 rows each).
pub const TC_WARPS: usize = 4;
/// Static shared memory a kernel may declare.
const SHARED_LIMIT: usize = 48 * 1024;

/// The tensor-core kernels' operand type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorCore {
    Fp16,
    Bf16,
}

impl TensorCore {
    fn bits(self, x: f32) -> u16 {
        match self {
            TensorCore::Fp16 => half::f16::from_f32(x).to_bits(),
            TensorCore::Bf16 => half::bf16::from_f32(x).to_bits(),
        }
    }
}

/// The tensor-core kernels for `layers` (`mlp_tc`, `mlp_tc_grid`), their
/// padded weights (as fp16/bf16 bits) and biases; every width padded to a
/// multiple of 16 with zeros. Refused when the weights and the warps'
/// scratch tiles do not fit in 48 KB of shared memory.
pub fn kernel_source_tc(layers: &[Dense], tc: TensorCore) -> Result<(String, Vec<u16>, Vec<f32>), String> {
    let pad = |n: usize| n.div_ceil(16) * 16;
    let maxw = layers.iter().map(|l| pad(l.d_in).max(pad(l.d_out))).max().unwrap_or(16);
    let (mut w, mut b) = (Vec::new(), Vec::new());
    let mut steps = String::new();
    for (i, l) in layers.iter().enumerate() {
        let (k, n) = (pad(l.d_in), pad(l.d_out));
        let (wo, bo) = (w.len(), b.len());
        for r in 0..k {
            for c in 0..n {
                w.push(tc.bits(if r < l.d_in && c < l.d_out { l.w[r * l.d_out + c] } else { 0.0 }));
            }
        }
        b.extend((0..n).map(|c| if c < l.d_out { l.b[c] } else { 0.0 }));
        let last = i + 1 == layers.len();
        steps += &format!("    LAYER({k}, {n}, {}, {wo}, {bo}, act_{}, {}, {last})\n", l.d_out, l.act, lit(l.param));
    }
    let elem = 2;
    let shared = w.len() * elem + b.len() * 4 + TC_WARPS * 16 * maxw * (elem + 4);
    if shared > SHARED_LIMIT {
        return Err(format!("the tensor-core kernel needs {} KB of shared memory for this network (limit {} KB)", shared.div_ceil(1024), SHARED_LIMIT / 1024));
    }
    let (ty, header, to) = match tc {
        TensorCore::Fp16 => ("__half", "cuda_fp16.h", "__float2half_rn"),
        TensorCore::Bf16 => ("__nv_bfloat16", "cuda_bf16.h", "__float2bfloat16_rn"),
    };
    let n_in = layers[0].d_in;
    let n_out = layers.last().expect("layers").d_out;
    let defs = format!(
        "#include <{header}>\n#define T {ty}\n#define TO_T {to}\n#define WARPS {TC_WARPS}\n#define MAXW {maxw}\n#define W_HALVES {}\n#define B_FLOATS {}\n#define N_IN {n_in}\n#define N_OUT {n_out}\n",
        w.len(),
        b.len()
    );
    // the activation functions of the fp32 kernel, without its entry points
    let acts = MLP_SOURCE.split("// @network").next().unwrap_or("");
    let network = format!("__device__ __forceinline__ void network(T* act, float* acc, const T* sw, const float* sb, float* __restrict__ y, long long row0, long long rows, int lane) {{\n{steps}}}\n");
    Ok((format!("{defs}{acts}\n{}", MLP_TC_SOURCE.replacen("// @network", &network, 1)), w, b))
}

/// Compiles the tensor-core kernels to PTX for `arch` (bf16 needs sm_80 or later).
pub fn compile_tc(layers: &[Dense], tc: TensorCore, arch: Option<&'static str>) -> Result<cudarc::nvrtc::Ptx, Error> {
    let (src, _, _) = kernel_source_tc(layers, tc).map_err(|e| Error::invalid("precision", e, "build this network with --precision fp32"))?;
    let opts = cudarc::nvrtc::CompileOptions { arch, name: Some("mlp_tc.cu".into()), include_paths: crate::gpu::cuda_include()?.iter().map(|p| p.display().to_string()).collect(), ..Default::default() };
    crate::gpu::compile(src, opts, "the tensor-core MLP kernel", "this is a bug in kernels/mlp_tc.cu or its generated body")
}

/// Compiles the kernels for `layers` to PTX for `arch` (NVRTC, no GPU needed).
pub fn compile(layers: &[Dense], form: Form, arch: Option<&'static str>) -> Result<cudarc::nvrtc::Ptx, Error> {
    let (src, _) = kernel_source(layers, form);
    let opts = cudarc::nvrtc::CompileOptions { arch, name: Some("mlp.cu".into()), ..Default::default() };
    crate::gpu::compile(src, opts, "the MLP kernel", "this is a bug in kernels/mlp.cu or its generated body")
}
