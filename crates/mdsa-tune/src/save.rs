//! Writing a tuned model as a sentence-transformers directory.

use std::collections::HashMap;
use std::path::Path;

use mdsa_models::arch::bert::TensorNames;
use mdsa_models::weights::SafetensorsWeights;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::error::{Result, TuneError};
use crate::model::{Encoder, linear_values, norm_values};
use crate::train::TuneReport;

/// Files of the base model that are weights (replaced by the tuned
/// `model.safetensors`) or other formats of them (which would be stale).
fn is_weights(name: &str) -> bool {
    [
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".onnx",
        ".h5",
        ".msgpack",
        ".ot",
        ".index.json",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
}

/// Folders of other export formats, left out for the same reason.
const SKIPPED_DIRS: [&str; 3] = ["onnx", "openvino", ".cache"];

/// Copies `from` into `to`, without weight files, following links (a Hub
/// cache snapshot is links into its blob store).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let write_error = |path: &Path, e: std::io::Error| TuneError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(to).map_err(|e| write_error(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| write_error(from, e))? {
        let entry = entry.map_err(|e| write_error(from, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let source = entry.path();
        let target = to.join(&name);
        if source.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                copy_dir(&source, &target)?;
            }
        } else if !is_weights(&name) {
            std::fs::copy(&source, &target).map_err(|e| write_error(&target, e))?;
        }
    }
    Ok(())
}

/// Writes `encoder`'s weights (and the base model's untouched ones) as f32
/// `model.safetensors` under the base model's tensor names, beside a copy of
/// its other files and `mdsa_tune.json` (how it was tuned).
pub(crate) fn write_model(
    base: &Path,
    weights: &SafetensorsWeights,
    names: &TensorNames,
    encoder: &Encoder,
    out: &Path,
    report: &TuneReport,
) -> Result<()> {
    // Compared as the filesystem resolves them: a relative `out` may name
    // the base directory itself (tuning a tuned model again).
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(out, base) {
        return Err(TuneError::Write {
            path: out.to_path_buf(),
            message: "the tuned model must not overwrite the model it was tuned from".into(),
        });
    }
    copy_dir(base, out)?;
    let mut trained: HashMap<String, Vec<f32>> = HashMap::new();
    let put_norm = |trained: &mut HashMap<String, Vec<f32>>,
                    prefix: &str,
                    (weight, bias): (Vec<f32>, Vec<f32>)| {
        let (w, b) = if weights.contains(&format!("{prefix}.gamma")) {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        trained.insert(format!("{prefix}.{w}"), weight);
        trained.insert(format!("{prefix}.{b}"), bias);
    };
    put_norm(
        &mut trained,
        &names.embeddings_norm(),
        norm_values(&encoder.embeddings_norm),
    );
    for (i, layer) in encoder.layers.iter().enumerate() {
        let l = names.layer(i);
        put_norm(
            &mut trained,
            &l.attention_norm,
            norm_values(&layer.attention_norm),
        );
        put_norm(
            &mut trained,
            &l.output_norm,
            norm_values(&layer.output_norm),
        );
        for (name, module) in [
            (&l.query, &layer.query),
            (&l.key, &layer.key),
            (&l.value, &layer.value),
            (&l.attention_output, &layer.attention_output),
            (&l.intermediate, &layer.intermediate),
            (&l.output, &layer.output),
        ] {
            let (weight, bias) = linear_values(module);
            trained.insert(format!("{name}.weight"), weight);
            trained.insert(format!("{name}.bias"), bias);
        }
    }
    // Trained tensors as f32; every other one (frozen embeddings, integer
    // buffers such as `position_ids`) exactly as stored.
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut tensor_names: Vec<&str> = weights.names().collect();
    tensor_names.sort_unstable();
    for name in tensor_names {
        let Some((dtype, shape, bytes)) = weights.raw(name) else {
            continue;
        };
        let (dtype, bytes) = match trained.remove(name) {
            Some(values) => (
                Dtype::F32,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            None => (dtype, bytes.to_vec()),
        };
        tensors.push((name.to_string(), dtype, shape.to_vec(), bytes));
    }
    if let Some(name) = trained.keys().next() {
        return Err(TuneError::Write {
            path: out.to_path_buf(),
            message: format!("trained tensor {name} is not in the base model"),
        });
    }
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| TuneError::Write {
                    path: out.join("model.safetensors"),
                    message: format!("tensor {name}: {e}"),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let path = out.join("model.safetensors");
    safetensors::serialize_to_file(views, None, &path).map_err(|e| TuneError::Write {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let provenance = out.join("mdsa_tune.json");
    let text = serde_json::to_string_pretty(report).unwrap_or_default();
    std::fs::write(&provenance, text + "\n").map_err(|e| TuneError::Write {
        path: provenance,
        message: e.to_string(),
    })
}
