"""Write SML_MessageBody values: ``72 63 <tag hi lo> <body>``."""

from __future__ import annotations

from smtestbed.proto.sml.fields import (
    encode_list_entry,
    encode_octet_list,
    encode_optional_time,
    encode_period_entry,
    encode_time,
)
from smtestbed.proto.sml.messages import (
    AttentionResponse,
    GetListRequest,
    GetListResponse,
    GetProfileListRequest,
    GetProfileListResponse,
    MessageBody,
    MessageTag,
    PublicCloseRequest,
    PublicCloseResponse,
    PublicOpenRequest,
    PublicOpenResponse,
    RawBody,
)
from smtestbed.proto.sml.tl import (
    SmlInt,
    encode_absent,
    encode_bool,
    encode_int,
    encode_list_header,
    encode_node,
    encode_octets,
)
from smtestbed.proto.sml.tl import encode_optional_octets as _opt

__all__ = ["body_tag", "encode_body"]


def _u8(value: int | None) -> bytes:
    return encode_absent() if value is None else encode_int(SmlInt(value=value, size=1))


def _seq(*parts: bytes) -> bytes:
    return encode_list_header(len(parts)) + b"".join(parts)


def _open_req(b: PublicOpenRequest) -> bytes:
    return _seq(
        _opt(b.codepage),
        encode_octets(b.client_id),
        encode_octets(b.req_file_id),
        _opt(b.server_id),
        _opt(b.username),
        _opt(b.password),
        _u8(b.sml_version),
    )


def _open_res(b: PublicOpenResponse) -> bytes:
    return _seq(
        _opt(b.codepage),
        _opt(b.client_id),
        encode_octets(b.req_file_id),
        encode_octets(b.server_id),
        encode_optional_time(b.ref_time),
        _u8(b.sml_version),
    )


def _get_list_req(b: GetListRequest) -> bytes:
    return _seq(
        encode_octets(b.client_id),
        _opt(b.server_id),
        _opt(b.username),
        _opt(b.password),
        _opt(b.list_name),
    )


def _get_list_res(b: GetListResponse) -> bytes:
    entries = encode_list_header(len(b.entries)) + b"".join(map(encode_list_entry, b.entries))
    return _seq(
        _opt(b.client_id),
        encode_octets(b.server_id),
        _opt(b.list_name),
        encode_optional_time(b.act_sensor_time),
        entries,
        _opt(b.list_signature),
        encode_optional_time(b.act_gateway_time),
    )


def _profile_req(b: GetProfileListRequest) -> bytes:
    rawdata = encode_absent() if b.with_rawdata is None else encode_bool(b.with_rawdata)
    objects = encode_absent() if b.object_list is None else encode_octet_list(b.object_list)
    return _seq(
        _opt(b.server_id),
        _opt(b.username),
        _opt(b.password),
        rawdata,
        encode_optional_time(b.begin_time),
        encode_optional_time(b.end_time),
        encode_octet_list(b.tree_path),
        objects,
        encode_node(b.das_details),
    )


def _profile_res(b: GetProfileListResponse) -> bytes:
    periods = encode_list_header(len(b.period_list)) + b"".join(
        map(encode_period_entry, b.period_list)
    )
    return _seq(
        encode_octets(b.server_id),
        encode_time(b.act_time),
        encode_int(SmlInt(value=b.reg_period, size=4)),
        encode_octet_list(b.tree_path),
        encode_time(b.val_time),
        encode_int(b.status),
        periods,
        _opt(b.rawdata),
        _opt(b.period_signature),
    )


def _body_bytes(body: MessageBody) -> bytes:
    match body:
        case PublicOpenRequest():
            return _open_req(body)
        case PublicOpenResponse():
            return _open_res(body)
        case PublicCloseRequest() | PublicCloseResponse():
            return _seq(_opt(body.global_signature))
        case GetListRequest():
            return _get_list_req(body)
        case GetListResponse():
            return _get_list_res(body)
        case GetProfileListRequest():
            return _profile_req(body)
        case GetProfileListResponse():
            return _profile_res(body)
        case AttentionResponse():
            return _seq(
                encode_octets(body.server_id),
                encode_octets(body.attention_no),
                _opt(body.attention_msg),
                encode_node(body.attention_details),
            )
        case RawBody():
            return encode_node(body.content)


_TAGS: dict[type, MessageTag] = {
    PublicOpenRequest: MessageTag.PUBLIC_OPEN_REQ,
    PublicOpenResponse: MessageTag.PUBLIC_OPEN_RES,
    PublicCloseRequest: MessageTag.PUBLIC_CLOSE_REQ,
    PublicCloseResponse: MessageTag.PUBLIC_CLOSE_RES,
    GetListRequest: MessageTag.GET_LIST_REQ,
    GetListResponse: MessageTag.GET_LIST_RES,
    GetProfileListRequest: MessageTag.GET_PROFILE_LIST_REQ,
    GetProfileListResponse: MessageTag.GET_PROFILE_LIST_RES,
    AttentionResponse: MessageTag.ATTENTION_RES,
}


def body_tag(body: MessageBody) -> int:
    """Return the SML_MessageBody CHOICE tag of ``body``."""
    return body.tag if isinstance(body, RawBody) else int(_TAGS[type(body)])


def encode_body(body: MessageBody, *, tag_size: int = 2) -> bytes:
    """Encode SML_MessageBody with its CHOICE tag as an Unsigned of ``tag_size`` bytes."""
    tag = body_tag(body)
    tag_int = SmlInt(value=tag, size=max(tag_size, 2 if tag <= 0xFFFF else 4))
    return encode_list_header(2) + encode_int(tag_int) + _body_bytes(body)
