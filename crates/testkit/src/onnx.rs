//! Tiny ONNX segmentation models written byte by byte (the ONNX protobuf, no Python), whose exact
//! output is known, so tests can run the real processor's model path without a real model.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(float, repeated, tag = "4")]
    float_data: Vec<f32>,
    #[prost(string, tag = "8")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(int64, tag = "1")]
    dim_value: i64,
}

const FLOAT: i32 = 1;

fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(|&d| Dimension { dim_value: d }).collect(),
                }),
            }),
        }),
    }
}

/// A "segmentation model" of input `[1, channels, side, side]` whose mask is its first input
/// channel: a 1×1 convolution with weights (1, 0, 0) and no bias. After the pipeline's min-max
/// stretch, the mask is the photo's red channel stretched to 0..1 — a known answer.
pub fn red_channel_model(side: i64, channels: i64) -> Vec<u8> {
    let mut weights = vec![0.0f32; channels as usize];
    weights[0] = 1.0;
    let model = ModelProto {
        ir_version: 8,
        producer_name: "atelier-testkit".into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            name: "red-channel".into(),
            node: vec![NodeProto {
                input: vec!["input".into(), "weights".into()],
                output: vec!["mask".into()],
                name: "pick-red".into(),
                op_type: "Conv".into(),
            }],
            initializer: vec![TensorProto {
                dims: vec![1, channels, 1, 1],
                data_type: FLOAT,
                float_data: weights,
                name: "weights".into(),
            }],
            input: vec![value("input", &[1, channels, side, side])],
            output: vec![value("mask", &[1, 1, side, side])],
        }),
    };
    model.encode_to_vec()
}

/// Where the ONNX Runtime library is: `ATELIER_ONNXRUNTIME`, else the copy
/// `scripts/install-onnxruntime.sh` puts under the repository's `var/`. Tests that run models
/// assert it exists: `make test` installs it, so a missing library is a failure, not a skip.
pub fn onnxruntime_library() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("ATELIER_ONNXRUNTIME") {
        return path.into();
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join("var/onnxruntime/libonnxruntime.so");
    assert!(
        path.is_file(),
        "ONNX Runtime is not installed at {} (run scripts/install-onnxruntime.sh, as make test does)",
        path.display()
    );
    path
}
