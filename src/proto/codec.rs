//! The codec of every Courier service and client: tonic-prost's encoding, and a decoder that
//! says in Courier's words why bytes are not the message they claim to be.
//!
//! tonic-prost answers an undecodable request INTERNAL with prost's text, which names Rust
//! fields ("MessageRef.r#ref: ConfirmRequest.message: invalid string value"). A request the
//! client got wrong is INVALID_ARGUMENT; an answer a checker or receiver got wrong stays
//! INTERNAL, as gRPC prescribes for a peer's malformed response. A decoder does not know which
//! side it is on, but the contract does: a type some method takes is a request, and no method
//! answers with a type another one takes (a test below holds the contract to that).

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::LazyLock;

use prost::{DecodeError, Message, Name};
use prost_types::{FileDescriptorSet, MethodDescriptorProto};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

/// Set as `codec_path` in build.rs, so the generated services and clients use it.
pub struct CourierCodec<T, U> {
    prost: ProstCodec<T, U>,
}

impl<T, U> Default for CourierCodec<T, U> {
    fn default() -> Self {
        Self {
            prost: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for CourierCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CourierDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.prost.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CourierDecoder {
            _message: PhantomData,
        }
    }
}

/// Decodes `U`, or answers why the bytes are not a `U`.
pub struct CourierDecoder<U> {
    _message: PhantomData<U>,
}

impl<U: Message + Name + Default> Decoder for CourierDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|error| undecodable(&U::full_name(), &error))
    }
}

/// The full names of the types the contract's methods take.
static REQUEST_TYPES: LazyLock<HashSet<String>> =
    LazyLock::new(|| method_types(|method| method.input_type()));

/// The full names (without the leading dot) of one side of every method of the contract.
fn method_types(side: fn(&MethodDescriptorProto) -> &str) -> HashSet<String> {
    let set = FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set built by build.rs decodes");
    set.file
        .iter()
        .flat_map(|file| &file.service)
        .flat_map(|service| &service.method)
        .map(|method| side(method).trim_start_matches('.').to_owned())
        .collect()
}

/// The status for bytes that are not a valid `message` (its full proto name).
fn undecodable(message: &str, error: &DecodeError) -> Status {
    let problem = problem(error);
    if REQUEST_TYPES.contains(message) {
        Status::invalid_argument(format!("the request is not a valid {message}: {problem}"))
    } else {
        Status::internal(format!("the answer is not a valid {message}: {problem}"))
    }
}

/// prost's cause in plain words. prost exposes it only as text (its "best effort" guess), so
/// this reads the end of that text; anything unrecognized is called not protobuf at all.
fn problem(error: &DecodeError) -> &'static str {
    let text = error.to_string();
    if text.ends_with("data is not UTF-8 encoded") {
        "a string field is not valid UTF-8"
    } else if ["buffer underflow", "delimited length exceeded"]
        .iter()
        .any(|cause| text.ends_with(cause))
    {
        "it ends in the middle of a field (truncated?)"
    } else if text.ends_with("recursion limit reached") {
        "it nests messages too deeply"
    } else {
        "the bytes are not protobuf encoding of it"
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::proto;

    fn decode<U: Message + Name + Default>(bytes: &[u8]) -> Result<U, Status> {
        U::decode(bytes).map_err(|error| undecodable(&U::full_name(), &error))
    }

    #[test]
    fn undecodable_requests_are_invalid_arguments_in_plain_words() {
        // message (field 1) → producer_key (field 2) → key (field 2) = 0xFF, not UTF-8.
        let bad_utf8 = [0x0A, 0x05, 0x12, 0x03, 0x12, 0x01, 0xFF];
        let status = decode::<proto::ConfirmRequest>(&bad_utf8).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "the request is not a valid courier.v1.ConfirmRequest: a string field is not valid UTF-8"
        );

        let valid = proto::PrepareRequest {
            producer: "shop".into(),
            key: "order-1".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let status = decode::<proto::PrepareRequest>(&valid[..valid.len() - 2]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status
                .message()
                .ends_with("it ends in the middle of a field (truncated?)")
        );

        let status = decode::<proto::AckRequest>(&[0xFF; 12]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().ends_with("not protobuf encoding of it"));
    }

    #[test]
    fn undecodable_answers_stay_internal() {
        let status = decode::<proto::CheckResponse>(&[0xFF; 12]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(
            status
                .message()
                .starts_with("the answer is not a valid courier.v1.CheckResponse")
        );
    }

    #[test]
    fn a_receivers_request_is_a_request_too() {
        let status = decode::<proto::Delivery>(&[0xFF; 12]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }

    /// The request/answer split above rests on this.
    #[test]
    fn no_method_answers_with_a_type_another_takes() {
        let answers = method_types(|method| method.output_type());
        assert!(REQUEST_TYPES.contains("courier.v1.ConfirmRequest"));
        assert!(answers.contains("courier.v1.CheckResponse"));
        assert!(REQUEST_TYPES.is_disjoint(&answers));
    }
}
