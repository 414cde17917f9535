"""The seed notification payloads (``fixtures/seed``) and the shape checker that compares the
gateway's messages against them (``tests/wire_shape.py``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from wire_shape import assert_same_shape, shape

SEED_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "seed"
NAMES = [
    "email_invited",
    "email_revoked",
    "email_accepted",
    "chat_invited",
    "chat_revoked",
    "chat_accepted",
    "chat_notifications",
]
CONNECT_ADVICE = {"interval": 0, "timeout": 30000, "reconnect": "retry"}
ACCEPTED_EMAIL_CAPABILITIES = [
    "Transfer",
    "PlaceInQueue",
    "StopProcessing",
    "PlaceInWorkbin",
    "UpdateProperties",
    "Reply",
    "ReplyAll",
]


def load(name: str) -> Any:
    return json.loads((SEED_DIR / f"{name}.json").read_text(encoding="utf-8"))


def data(name: str) -> dict[str, Any]:
    result: dict[str, Any] = load(name)[0]["data"]
    return result


# --- the fixture files -------------------------------------------------------------------------


def test_the_seed_directory_holds_exactly_the_seven_responses() -> None:
    assert sorted(p.stem for p in SEED_DIR.glob("*.json")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_each_fixture_is_a_data_message_then_a_connect_reply(name: str) -> None:
    response = load(name)
    assert isinstance(response, list)
    assert len(response) == 2
    message, reply = response
    assert message["channel"] == "/v2/me/interactions"
    assert message["data"]["messageType"] == "InteractionStateMessage"
    assert list(message) == ["data", "channel"]
    assert reply["channel"] == "/meta/connect"
    assert reply["successful"] is True
    assert reply["advice"] == CONNECT_ADVICE
    assert list(reply) == ["successful", "advice", "id", "channel"]
    assert isinstance(reply["id"], str)


@pytest.mark.parametrize(
    ("name", "channel", "state", "message_id", "connect_id"),
    [
        ("email_invited", "email", "Invited", "0000Ja8V814907JM", "25"),
        ("email_revoked", "email", "Revoked", "0000Ja8V814907JM", "25"),
        ("email_accepted", "email", "Accepted", "0000Ja8V814907JM", "26"),
        ("chat_invited", "chat", "Invited", "0000Ja8V814907KS", "15"),
        ("chat_revoked", "chat", "Revoked", "0000Ja8V814907KS", "15"),
        ("chat_accepted", "chat", "Accepted", "0000Ja8V814907KS", "16"),
        ("chat_notifications", "chat", "Accepted", "0000Ja8V814907KU", "17"),
    ],
)
def test_each_fixture_keeps_the_seed_identity(
    name: str, channel: str, state: str, message_id: str, connect_id: str
) -> None:
    payload = data(name)
    assert payload["channel"] == channel
    assert payload["state"] == state
    assert payload["id"] == message_id
    assert payload["interactionType"] == "Inbound"
    assert payload["interactionSubType"] == "InboundNew"
    assert load(name)[1]["id"] == connect_id


@pytest.mark.parametrize(
    ("name", "capabilities"),
    [
        ("email_invited", ["Accept", "Reject"]),
        ("email_revoked", []),
        ("email_accepted", ACCEPTED_EMAIL_CAPABILITIES),
        ("chat_invited", ["Accept", "Reject"]),
        ("chat_revoked", []),
        ("chat_accepted", ACCEPTED_EMAIL_CAPABILITIES[:-1]),
        ("chat_notifications", ACCEPTED_EMAIL_CAPABILITIES[:-1]),
    ],
)
def test_capabilities_are_those_of_the_seed(name: str, capabilities: list[str]) -> None:
    assert data(name)["capabilities"] == capabilities


@pytest.mark.parametrize("name", NAMES)
def test_user_data_keeps_types_and_odd_keys(name: str) -> None:
    user_data = data(name)["userData"]
    assert user_data["RRequestedSkills"] is None
    assert "RRequestedSkills" in user_data
    assert type(user_data["PegAG?: 2>1"]) is int
    assert user_data["PegAG?: 2>1"] == 1
    assert type(user_data["ServiceObjective"]) is int
    assert user_data["RTargetObjectSelected"] == "?: 2>1"
    assert user_data["RTargetRequested"] == "?: 2>1"
    assert user_data["RTargetAgentGroup"] == "?: 2>1"
    assert user_data["RTargetTypeSelected"] == "2"


@pytest.mark.parametrize("name", ["email_invited", "email_revoked", "email_accepted"])
def test_email_user_data_has_the_repaired_date(name: str) -> None:
    user_data = data(name)["userData"]
    assert len(user_data) == 39
    assert type(user_data["_AutoReplyCount"]) is int
    assert user_data["_AutoReplyCount"] == 0
    assert user_data["Header_Date"] == "Fri, 28 Jun 2013 13:30:34 -0700"
    assert user_data["_AttachmentsSize"] == "0"
    content_type = 'multipart/mixed;boundary="===============1840393583=="'
    assert user_data["Header_Content-Type"] == content_type
    assert user_data["Subject"] == "test_reply"


@pytest.mark.parametrize("name", ["chat_invited", "chat_revoked", "chat_accepted"])
def test_chat_user_data_matches_the_seed(name: str) -> None:
    user_data = data(name)["userData"]
    assert len(user_data) == 29
    assert "_AutoReplyCount" not in user_data
    assert user_data["Subject"] == "Customersupport"
    assert user_data["ChatServerPort"] == "7160"


def test_invited_and_revoked_email_carry_only_the_interaction_id() -> None:
    for name in ("email_invited", "email_revoked"):
        assert data(name)["email_object"] == {"interactionId": "0000Ja8V814907JM"}
        assert "inQueues" not in data(name)
        assert "outQueues" not in data(name)


def test_email_accepted_has_the_full_email_object_and_queues() -> None:
    payload = data("email_accepted")
    email = payload["email_object"]
    assert list(email) == ["text", "interactionId", "fromAddress", "toAddress", "subject"]
    assert email["text"] == "This is email body.\r\nTesting, hopefully this will work"
    assert email["fromAddress"] == "Customer1@ci-vm106"
    assert email["toAddress"] == "support@ci-vm106"
    assert payload["inQueues"] == {"__STOP__": ""}
    assert payload["outQueues"] == {"SimpleEmailOutQueue": ""}
    assert list(payload) == [
        "userData",
        "email_object",
        "currentQueue",
        "interactionSubType",
        "inQueues",
        "capabilities",
        "outQueues",
        "state",
        "messageType",
        "id",
        "channel",
        "interactionType",
    ]


def test_email_text_keeps_a_real_crlf_in_the_file() -> None:
    raw = (SEED_DIR / "email_accepted.json").read_text(encoding="utf-8")
    assert r'"This is email body.\r\nTesting, hopefully this will work"' in raw


def test_chat_accepted_has_the_session_queues_and_five_notifications() -> None:
    payload = data("chat_accepted")
    assert payload["sessionId"] == "0000Ja8V814907KS"
    assert payload["inQueues"] == {"SimpleChatTranscriptQueue": ""}
    assert "outQueues" not in payload
    assert "email_object" not in payload
    notifications = payload["chat_notifications"]
    assert [n["EventId"] for n in notifications] == [1, 2, 3, 4, 5]
    assert [n["MessageType"] for n in notifications] == [
        "PARTY_JOINED",
        "NEW_MESSAGE",
        "NEW_MESSAGE",
        "NEW_MESSAGE",
        "PARTY_JOINED",
    ]
    assert [n["UserType"] for n in notifications] == ["Client", None, None, None, "Agent"]
    nick_names = ["CustomerName!L", None, None, None, "TestName"]
    assert [n["NickName"] for n in notifications] == nick_names
    assert notifications[1]["MessageText"] == "testmessage1fromclient"
    assert all(n["NoticeText"] is None and n["NoticeType"] is None for n in notifications)
    assert next(iter(payload)) == "chat_notifications"


def test_chat_notifications_has_one_new_message() -> None:
    payload = data("chat_notifications")
    assert payload["sessionId"] == "0000Ja8V814907KU"
    assert payload["inQueues"] == {"SimpleChatTranscriptQueue": ""}
    (notification,) = payload["chat_notifications"]
    assert notification == {
        "EventId": 3,
        "NoticeText": None,
        "NoticeType": None,
        "MessageText": "testmessage1fromclient",
        "UserId": "009B51CDF65818CD",
        "MessageType": "NEW_MESSAGE",
        "UserType": None,
        "Visibility": "All",
        "NickName": None,
    }


def test_chat_invited_and_revoked_have_no_session_or_notifications() -> None:
    for name in ("chat_invited", "chat_revoked"):
        payload = data(name)
        assert "sessionId" not in payload
        assert "chat_notifications" not in payload
        assert "email_object" not in payload


# --- assert_same_shape -------------------------------------------------------------------------


def mismatch_lines(expected: object, actual: object, **kwargs: Any) -> list[str]:
    with pytest.raises(AssertionError) as caught:
        assert_same_shape(expected, actual, **kwargs)
    header, *lines = str(caught.value).splitlines()
    assert "shape mismatch" in header
    return lines


@pytest.mark.parametrize("name", NAMES)
def test_a_fixture_has_its_own_shape(name: str) -> None:
    assert_same_shape(load(name), load(name))


def test_changed_ids_texts_and_counters_keep_the_shape() -> None:
    actual = load("chat_accepted")
    payload = actual[0]["data"]
    payload["id"] = payload["sessionId"] = "0000XXXXXXXXXXXX"
    payload["capabilities"] = ["Transfer"]
    payload["userData"]["Subject"] = "Another subject"
    payload["userData"]["PegAG?: 2>1"] = 42
    for number, notification in enumerate(payload["chat_notifications"], start=100):
        notification["EventId"] = number
        notification["UserId"] = "FFFF"
    payload["chat_notifications"][1]["MessageText"] = "a different text"
    actual[1]["id"] = "9001"
    assert actual != load("chat_accepted")
    assert_same_shape(load("chat_accepted"), actual)

    email = load("email_accepted")
    email[0]["data"]["email_object"]["text"] = "Hi"
    email[0]["data"]["email_object"]["interactionId"] = "1"
    assert_same_shape(load("email_accepted"), email)


def test_empty_and_non_empty_capability_lists_match_each_other() -> None:
    assert_same_shape(load("email_invited"), load("email_revoked"))
    assert_same_shape(load("email_revoked"), load("email_invited"))
    assert_same_shape(load("chat_invited"), load("chat_revoked"))


def test_an_empty_expected_list_accepts_only_strings() -> None:
    actual = load("email_invited")
    actual[0]["data"]["capabilities"] = ["Accept", 1, None]
    lines = mismatch_lines(load("email_revoked"), actual)
    assert len(lines) == 2
    assert lines[0].startswith("$[0].data.capabilities[1]: expected str")
    assert lines[1].startswith("$[0].data.capabilities[2]: expected str")


def test_a_missing_nested_key_fails_naming_its_path() -> None:
    actual = load("email_accepted")
    del actual[0]["data"]["email_object"]["subject"]
    assert mismatch_lines(load("email_accepted"), actual) == [
        "$[0].data.email_object.subject: missing"
    ]


def test_a_key_that_is_not_an_identifier_is_quoted_in_the_path() -> None:
    actual = load("chat_invited")
    del actual[0]["data"]["userData"]["PegAG?: 2>1"]
    assert mismatch_lines(load("chat_invited"), actual) == [
        '$[0].data.userData["PegAG?: 2>1"]: missing'
    ]


def test_a_changed_scalar_type_fails() -> None:
    actual = load("email_invited")
    actual[0]["data"]["userData"]["_AutoReplyCount"] = "0"
    assert mismatch_lines(load("email_invited"), actual) == [
        '$[0].data.userData._AutoReplyCount: expected int, got str ("0")'
    ]


def test_null_accepts_only_null_and_only_null_is_accepted_for_it() -> None:
    actual = load("chat_invited")
    actual[0]["data"]["userData"]["RRequestedSkills"] = ""
    actual[0]["data"]["userData"]["Subject"] = None
    assert mismatch_lines(load("chat_invited"), actual) == [
        '$[0].data.userData.RRequestedSkills: expected null, got str ("")',
        "$[0].data.userData.Subject: expected str, got null (null)",
    ]


def test_a_changed_container_type_fails() -> None:
    actual = load("email_accepted")
    actual[0]["data"]["inQueues"] = ["__STOP__"]
    actual[0]["data"]["capabilities"] = "Transfer"
    assert mismatch_lines(load("email_accepted"), actual) == [
        '$[0].data.inQueues: expected object, got array (["__STOP__"])',
        '$[0].data.capabilities: expected array, got str ("Transfer")',
    ]


def test_bool_is_not_accepted_for_int_nor_int_for_bool() -> None:
    actual = load("email_invited")
    actual[0]["data"]["userData"]["_AutoReplyCount"] = False
    actual[1]["successful"] = 1
    assert mismatch_lines(load("email_invited"), actual) == [
        "$[0].data.userData._AutoReplyCount: expected int, got bool (false)",
        "$[1].successful: expected bool, got int (1)",
    ]


def test_int_and_float_are_distinct() -> None:
    with pytest.raises(AssertionError, match=r"\$\.timeout: expected int, got float"):
        assert_same_shape({"timeout": 30000}, {"timeout": 30000.0})
    with pytest.raises(AssertionError, match=r"\$\.ratio: expected float, got int"):
        assert_same_shape({"ratio": 0.5}, {"ratio": 1})


def test_an_extra_key_fails_unless_it_is_listed() -> None:
    actual = load("chat_accepted")
    actual[0]["data"]["sequence"] = 7
    actual[0]["data"]["chat_notifications"][0]["sequence"] = 8
    actual[1]["ext"] = {"ack": 3}
    lines = mismatch_lines(load("chat_accepted"), actual)
    assert lines == [
        "$[0].data.chat_notifications[0]: matches none of the 2 element shapes of the expected "
        "array; differences from the closest, expected $[0].data.chat_notifications[0]:",
        "  $[0].data.chat_notifications[0].sequence: unexpected key",
        "$[0].data.sequence: unexpected key",
        "$[1].ext: unexpected key",
    ]
    assert_same_shape(load("chat_accepted"), actual, extra_keys={"sequence", "ext"})
    lines = mismatch_lines(load("chat_accepted"), actual, extra_keys=["ext"])
    assert "$[0].data.sequence: unexpected key" in lines
    assert "$[1].ext: unexpected key" not in lines


def test_a_mixed_chat_notification_list_matches_the_seed_variants() -> None:
    seed = load("chat_accepted")
    notifications = seed[0]["data"]["chat_notifications"]
    joined, message = notifications[0], notifications[1]
    actual = copy.deepcopy(seed)
    actual[0]["data"]["chat_notifications"] = [message, message, joined, message, joined, message]
    assert_same_shape(seed, actual)
    assert_same_shape(seed, load("chat_notifications"))
    actual[0]["data"]["chat_notifications"] = []
    assert_same_shape(seed, actual)


def test_a_list_element_of_a_new_shape_fails() -> None:
    seed = load("chat_accepted")
    actual = copy.deepcopy(seed)
    # A string UserType (as in PARTY_JOINED) with a null NickName (as in NEW_MESSAGE): each
    # field has a type some variant allows, but no variant allows the whole element.
    hybrid = dict(actual[0]["data"]["chat_notifications"][1], UserType="Client")
    actual[0]["data"]["chat_notifications"].append(hybrid)
    lines = mismatch_lines(seed, actual)
    assert lines[0].startswith("$[0].data.chat_notifications[5]: matches none of the 2 element")
    assert len(lines) == 2
    assert lines[1].startswith("  $[0].data.chat_notifications[5].")


def test_a_list_element_with_a_wrong_field_type_fails() -> None:
    actual = load("chat_notifications")
    actual[0]["data"]["chat_notifications"][0]["EventId"] = "3"
    assert mismatch_lines(load("chat_notifications"), actual) == [
        '$[0].data.chat_notifications[0].EventId: expected int, got str ("3")'
    ]


def test_every_mismatch_is_reported_one_per_line() -> None:
    actual = load("email_accepted")
    del actual[0]["data"]["email_object"]["subject"]
    actual[0]["data"]["userData"]["_AutoReplyCount"] = "0"
    actual[0]["data"]["sequence"] = 1
    del actual[1]["advice"]
    with pytest.raises(AssertionError) as caught:
        assert_same_shape(load("email_accepted"), actual)
    assert str(caught.value).splitlines() == [
        "4 shape mismatches:",
        '$[0].data.userData._AutoReplyCount: expected int, got str ("0")',
        "$[0].data.email_object.subject: missing",
        "$[0].data.sequence: unexpected key",
        "$[1].advice: missing",
    ]


def test_fixtures_of_different_kinds_do_not_match() -> None:
    lines = mismatch_lines(load("email_invited"), load("chat_invited"))
    assert "$[0].data.email_object: missing" in lines
    assert "$[0].data.userData.Header_Date: missing" in lines
    assert "$[0].data.userData.ChatServerHost: unexpected key" in lines


def test_the_path_prefix_can_be_given() -> None:
    with pytest.raises(AssertionError, match=r"^1 shape mismatch:\nmsg\.id: missing$"):
        assert_same_shape({"id": "1"}, {}, path="msg")


def test_shape_is_a_readable_type_tree() -> None:
    notifications = data("chat_accepted")["chat_notifications"]
    assert shape(notifications) == [
        {
            "EventId": "int",
            "NoticeText": "null",
            "NoticeType": "null",
            "MessageText": "null",
            "UserId": "str",
            "MessageType": "str",
            "UserType": "str",
            "Visibility": "str",
            "NickName": "str",
        },
        {
            "EventId": "int",
            "NoticeText": "null",
            "NoticeType": "null",
            "MessageText": "str",
            "UserId": "str",
            "MessageType": "str",
            "UserType": "null",
            "Visibility": "str",
            "NickName": "null",
        },
    ]
    assert shape(load("email_revoked")[1]) == {
        "successful": "bool",
        "advice": {"interval": "int", "timeout": "int", "reconnect": "str"},
        "id": "str",
        "channel": "str",
    }
    assert shape([]) == []
