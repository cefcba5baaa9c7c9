//! Tensor files from strangers: arbitrary bytes and mutated real files give tensors or a typed
//! [`Error::Format`] (never a panic), for safetensors and GGUF alike. The `fuzz/` targets
//! `adapter_safetensors` and `gguf` run the same properties for millions of inputs.

#[cfg(test)] // (tidy: everything below is test code)
use crate::gguf::GgufFile;
use crate::stored::read_lazy_safetensors;
use crate::tensors::parse_safetensors;
use peft_core::Error;
use proptest::prelude::*;
use std::path::Path;

/// Real adapter files of the Python library, and a GGUF file with every block type.
const SAFETENSORS: [&[u8]; 2] = [
    include_bytes!("../../../fixtures/configs/ia3/adapter_model.safetensors"),
    include_bytes!("../../../fixtures/configs/adalora/adapter_model.safetensors"),
];
const GGUF: &[u8] = include_bytes!("../../../fixtures/gguf/tiny.gguf");

/// One change to a file: overwrite a byte, cut the file there, insert bytes, or write a
/// little-endian `u64` (a length or an offset, in both formats) over the bytes there.
#[derive(Clone, Debug)]
enum Edit {
    Set(prop::sample::Index, u8),
    Cut(prop::sample::Index),
    Insert(prop::sample::Index, Vec<u8>),
    Word(prop::sample::Index, u64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let word = prop_oneof![any::<u64>(), 0u64..4096, Just(u64::MAX), Just(1 << 32)];
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        any::<prop::sample::Index>().prop_map(Edit::Cut),
        (any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<prop::sample::Index>(), word).prop_map(|(i, w)| Edit::Word(i, w)),
    ]
}

fn mutate(file: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = file.to_vec();
    for e in edits {
        let len = b.len().max(1);
        match e {
            Edit::Set(i, v) => {
                if let Some(x) = b.get_mut(i.index(len)) {
                    *x = *v;
                }
            }
            Edit::Cut(i) => b.truncate(i.index(len)),
            Edit::Insert(i, bytes) => {
                let at = i.index(len).min(b.len());
                b.splice(at..at, bytes.iter().copied());
            }
            Edit::Word(i, w) => {
                let at = i.index(len);
                for (k, x) in w.to_le_bytes().into_iter().enumerate() {
                    if let Some(y) = b.get_mut(at + k) {
                        *y = x;
                    }
                }
            }
        }
    }
    b
}

/// The whole-file parser and the reader that loads models tensor by tensor from disk
/// ([`read_lazy_safetensors`]) accept the same files, with the same tensors, and reject the rest
/// with a format error.
fn check_safetensors(bytes: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    match (parse_safetensors(bytes, &path), read_lazy_safetensors(&path)) {
        (Ok(tensors), Ok(lazy)) => {
            prop_assert_eq!(tensors.keys().collect::<Vec<_>>(), lazy.keys().collect::<Vec<_>>());
            for (name, data) in &tensors {
                prop_assert_eq!(data.num_elements(), data.shape().iter().product::<usize>(), "{}", name);
                prop_assert_eq!(lazy[name].shape(), data.shape().as_slice(), "{}", name);
                prop_assert_eq!(&lazy[name].read().map_err(|e| TestCaseError::fail(e.to_string()))?, data, "{}", name);
            }
        }
        (Err(Error::Format { format: "safetensors", .. }), Err(Error::Format { format: "safetensors", .. })) => {}
        (whole, lazy) => prop_assert!(false, "the readers disagree: {:?} / {:?}", whole.map(|t| t.len()), lazy.map(|t| t.len())),
    }
    Ok(())
}

fn check_gguf(bytes: &[u8]) -> Result<(), TestCaseError> {
    match GgufFile::from_bytes(bytes, "model.gguf") {
        Ok(file) => {
            for info in &file.tensors {
                // The header checked that every tensor lies inside the file, so reading cannot fail.
                let data = file.read_tensor_from(bytes, &info.name);
                prop_assert!(data.as_ref().is_ok_and(|d| d.shape().to_vec() == info.shape), "{}: {:?}", info.name, data.err());
            }
        }
        Err(Error::Format { format: "GGUF", .. }) => {}
        Err(other) => prop_assert!(false, "unexpected error kind: {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_are_tensors_or_format_errors(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_safetensors(&bytes)?;
        check_gguf(&bytes)?;
        // Behind a plausible header, so the parsers get past the first check.
        let json = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut header = (json.len() as u64).to_le_bytes().to_vec();
        header.extend(json);
        check_safetensors(&[header.as_slice(), bytes.as_slice()].concat())?;
        check_gguf(&[b"GGUF\x03\0\0\0".as_slice(), bytes.as_slice()].concat())?;
    }

    #[test]
    fn mutated_safetensors_files_are_tensors_or_format_errors(
        file in 0..SAFETENSORS.len(), edits in proptest::collection::vec(edit(), 1..4),
    ) {
        check_safetensors(&mutate(SAFETENSORS[file], &edits))?;
    }

    #[test]
    fn mutated_gguf_files_are_tensors_or_format_errors(edits in proptest::collection::vec(edit(), 1..4)) {
        check_gguf(&mutate(GGUF, &edits))?;
    }
}

#[test]
fn the_unmutated_files_read() {
    for file in SAFETENSORS {
        assert!(!parse_safetensors(file, Path::new("a.safetensors")).expect("reads").is_empty());
    }
    let gguf = GgufFile::from_bytes(GGUF, "tiny.gguf").expect("reads");
    assert_eq!(gguf.tensors.len(), 6);
    check_gguf(GGUF).expect("every tensor reads");
}
