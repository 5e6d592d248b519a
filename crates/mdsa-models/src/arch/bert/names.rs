//! Where each BERT-family checkpoint keeps its tensors.

use crate::weights::SafetensorsWeights;

/// A BERT-family layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderFamily {
    /// BERT and the models trained from it (MiniLM, BGE, E5, multilingual BERT).
    Bert,
    /// RoBERTa, XLM-RoBERTa and CamemBERT: BERT's layers, positions offset
    /// past the padding id.
    Roberta,
    /// DistilBERT: its own tensor names, no token types.
    DistilBert,
}

impl EncoderFamily {
    /// The `model_type`s supported, for error messages.
    pub const SUPPORTED: &'static str = "bert, roberta, xlm-roberta, camembert, distilbert";

    /// The family of a `config.json` `model_type`.
    pub fn of(model_type: &str) -> Option<Self> {
        match model_type {
            "bert" => Some(Self::Bert),
            "roberta" | "xlm-roberta" | "camembert" => Some(Self::Roberta),
            "distilbert" => Some(Self::DistilBert),
            _ => None,
        }
    }
}

/// The names of one layer's tensors (without `.weight`/`.bias`).
#[derive(Debug, Clone)]
pub struct LayerNames {
    /// Attention query projection.
    pub query: String,
    /// Attention key projection.
    pub key: String,
    /// Attention value projection.
    pub value: String,
    /// Attention output projection.
    pub attention_output: String,
    /// LayerNorm after attention.
    pub attention_norm: String,
    /// Feed-forward up projection.
    pub intermediate: String,
    /// Feed-forward down projection.
    pub output: String,
    /// LayerNorm after the feed-forward.
    pub output_norm: String,
}

impl LayerNames {
    /// The linear projections, with their names, in layer order.
    pub fn linears(&self) -> [&str; 6] {
        [
            &self.query,
            &self.key,
            &self.value,
            &self.attention_output,
            &self.intermediate,
            &self.output,
        ]
    }
}

/// Tensor names of a checkpoint: its family's, behind the prefix its head
/// class adds (`bert.`, `roberta.`, `distilbert.`) or none (as
/// sentence-transformers saves the bare model).
#[derive(Debug, Clone, Copy)]
pub struct TensorNames {
    family: EncoderFamily,
    prefix: &'static str,
}

impl TensorNames {
    /// The names `weights` uses for a model of `family`.
    pub fn detect(family: EncoderFamily, weights: &SafetensorsWeights) -> Self {
        let prefix = ["bert.", "roberta.", "distilbert."]
            .into_iter()
            .find(|p| weights.contains(&format!("{p}embeddings.word_embeddings.weight")))
            .unwrap_or("");
        Self { family, prefix }
    }

    /// An embedding table's weight: `word_embeddings`, `position_embeddings`,
    /// `token_type_embeddings`.
    pub fn embedding(&self, table: &str) -> String {
        format!("{}embeddings.{table}.weight", self.prefix)
    }

    /// The LayerNorm after the embeddings.
    pub fn embeddings_norm(&self) -> String {
        format!("{}embeddings.LayerNorm", self.prefix)
    }

    /// The family's names as sentence-transformers saves them (no prefix).
    pub fn bare(family: EncoderFamily) -> Self {
        Self { family, prefix: "" }
    }

    /// Layer `i`'s tensor names.
    pub fn layer(&self, i: usize) -> LayerNames {
        let p = self.prefix;
        match self.family {
            EncoderFamily::Bert | EncoderFamily::Roberta => {
                let l = format!("{p}encoder.layer.{i}");
                LayerNames {
                    query: format!("{l}.attention.self.query"),
                    key: format!("{l}.attention.self.key"),
                    value: format!("{l}.attention.self.value"),
                    attention_output: format!("{l}.attention.output.dense"),
                    attention_norm: format!("{l}.attention.output.LayerNorm"),
                    intermediate: format!("{l}.intermediate.dense"),
                    output: format!("{l}.output.dense"),
                    output_norm: format!("{l}.output.LayerNorm"),
                }
            }
            EncoderFamily::DistilBert => {
                let l = format!("{p}transformer.layer.{i}");
                LayerNames {
                    query: format!("{l}.attention.q_lin"),
                    key: format!("{l}.attention.k_lin"),
                    value: format!("{l}.attention.v_lin"),
                    attention_output: format!("{l}.attention.out_lin"),
                    attention_norm: format!("{l}.sa_layer_norm"),
                    intermediate: format!("{l}.ffn.lin1"),
                    output: format!("{l}.ffn.lin2"),
                    output_norm: format!("{l}.output_layer_norm"),
                }
            }
        }
    }
}
