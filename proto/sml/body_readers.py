"""Read and write SML_MessageBody: ``72 <tag> <body>``, one reader and writer per body."""

from __future__ import annotations

from collections.abc import Callable

from smtestbed.proto.sml.fields import (
    read_list_entry,
    read_octet_list,
    read_optional_time,
    read_period_entry,
    read_time,
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
    TlReader,
)

__all__ = ["read_body"]


def _read_open_req(r: TlReader) -> PublicOpenRequest:
    r.list_header("SML_PublicOpen.Req", 7)
    return PublicOpenRequest(
        codepage=r.optional_octets("codepage"),
        client_id=r.octets("clientId"),
        req_file_id=r.octets("reqFileId"),
        server_id=r.optional_octets("serverId"),
        username=r.optional_octets("username"),
        password=r.optional_octets("password"),
        sml_version=r.optional_number("smlVersion", 0, 255),
    )


def _read_open_res(r: TlReader) -> PublicOpenResponse:
    r.list_header("SML_PublicOpen.Res", 6)
    return PublicOpenResponse(
        codepage=r.optional_octets("codepage"),
        client_id=r.optional_octets("clientId"),
        req_file_id=r.octets("reqFileId"),
        server_id=r.octets("serverId"),
        ref_time=read_optional_time(r, "refTime"),
        sml_version=r.optional_number("smlVersion", 0, 255),
    )


def _read_close_req(r: TlReader) -> PublicCloseRequest:
    r.list_header("SML_PublicClose.Req", 1)
    return PublicCloseRequest(global_signature=r.optional_octets("globalSignature"))


def _read_close_res(r: TlReader) -> PublicCloseResponse:
    r.list_header("SML_PublicClose.Res", 1)
    return PublicCloseResponse(global_signature=r.optional_octets("globalSignature"))


def _read_get_list_req(r: TlReader) -> GetListRequest:
    r.list_header("SML_GetList.Req", 5)
    return GetListRequest(
        client_id=r.octets("clientId"),
        server_id=r.optional_octets("serverId"),
        username=r.optional_octets("username"),
        password=r.optional_octets("password"),
        list_name=r.optional_octets("listName"),
    )


def _read_get_list_res(r: TlReader) -> GetListResponse:
    r.list_header("SML_GetList.Res", 7)
    client_id, server_id = r.optional_octets("clientId"), r.octets("serverId")
    list_name = r.optional_octets("listName")
    sensor_time = read_optional_time(r, "actSensorTime")
    count = r.list_header("valList")
    entries = tuple(read_list_entry(r) for _ in range(count))
    return GetListResponse(
        client_id=client_id,
        server_id=server_id,
        list_name=list_name,
        act_sensor_time=sensor_time,
        entries=entries,
        list_signature=r.optional_octets("listSignature"),
        act_gateway_time=read_optional_time(r, "actGatewayTime"),
    )


def _read_profile_req(r: TlReader) -> GetProfileListRequest:
    r.list_header("SML_GetProfileList.Req", 9)
    server_id, username = r.optional_octets("serverId"), r.optional_octets("username")
    password = r.optional_octets("password")
    with_rawdata = None if r.skip_absent() else r.boolean("withRawdata")
    begin, end = read_optional_time(r, "beginTime"), read_optional_time(r, "endTime")
    return GetProfileListRequest(
        server_id=server_id,
        username=username,
        password=password,
        with_rawdata=with_rawdata,
        begin_time=begin,
        end_time=end,
        tree_path=read_octet_list(r, "parameterTreePath"),
        object_list=None if r.skip_absent() else read_octet_list(r, "object_List"),
        das_details=r.node(),
    )


def _read_profile_res(r: TlReader) -> GetProfileListResponse:
    r.list_header("SML_GetProfileList.Res", 9)
    server_id, act_time = r.octets("serverId"), read_time(r, "actTime")
    reg_period = r.number("regPeriod", 0, 0xFFFFFFFF)
    tree_path, val_time = read_octet_list(r, "parameterTreePath"), read_time(r, "valTime")
    status = r.integer("status")
    count = r.list_header("period_List")
    periods = tuple(read_period_entry(r) for _ in range(count))
    return GetProfileListResponse(
        server_id=server_id,
        act_time=act_time,
        reg_period=reg_period,
        tree_path=tree_path,
        val_time=val_time,
        status=status,
        period_list=periods,
        rawdata=r.optional_octets("rawdata"),
        period_signature=r.optional_octets("periodSignature"),
    )


def _read_attention(r: TlReader) -> AttentionResponse:
    r.list_header("SML_Attention.Res", 4)
    return AttentionResponse(
        server_id=r.octets("serverId"),
        attention_no=r.octets("attentionNo"),
        attention_msg=r.optional_octets("attentionMsg"),
        attention_details=r.node(),
    )


_READERS: dict[int, Callable[[TlReader], MessageBody]] = {
    MessageTag.PUBLIC_OPEN_REQ: _read_open_req,
    MessageTag.PUBLIC_OPEN_RES: _read_open_res,
    MessageTag.PUBLIC_CLOSE_REQ: _read_close_req,
    MessageTag.PUBLIC_CLOSE_RES: _read_close_res,
    MessageTag.GET_LIST_REQ: _read_get_list_req,
    MessageTag.GET_LIST_RES: _read_get_list_res,
    MessageTag.GET_PROFILE_LIST_REQ: _read_profile_req,
    MessageTag.GET_PROFILE_LIST_RES: _read_profile_res,
    MessageTag.ATTENTION_RES: _read_attention,
}


def read_body(r: TlReader) -> tuple[MessageBody, int]:
    """Read SML_MessageBody; return it and the wire width of its tag, bytes.

    A body without a model here becomes a RawBody.
    """
    r.list_header("SML_MessageBody", 2)
    start = r.pos
    tag = r.integer("message body tag")
    if tag.signed or tag.size > 4:
        raise r.fail("message body tag must be an Unsigned of 1..4 bytes", "wrong_type", start)
    reader = _READERS.get(tag.value)
    body = reader(r) if reader is not None else RawBody(tag=tag.value, content=r.node())
    return body, tag.size
