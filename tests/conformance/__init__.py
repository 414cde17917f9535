"""Bayeux conformance suite: bayeux.md §10, one test per numbered assertion, against the real
gateway on a loopback port.  Test ``test_10_NN_*`` checks §10 item NN; the ids in brackets
are the transports (``long-polling``, ``websocket``) and the table cases.

LP = long-polling, WS = websocket, "(…)" = what differs on that transport.

====  ======================================================  =================================
 §10  test                                                    transports
====  ======================================================  =================================
   1  test_handshake.py::test_10_01_handshake_reply           LP (HTTP 200, JSON), WS (frame)
   2  test_handshake.py::test_10_02_client_id_alphanumeric…   LP, WS
   3  test_handshake.py::test_10_03_supported_connection_…    LP, WS
   4  test_handshake.py::test_10_04_handshake_advice          LP, WS
   5  test_handshake.py::test_10_05_browser_cookie            LP (HTTP cookie)
   6  test_handshake.py::test_10_06_numeric_id_echoed_on_…    LP, WS
   7  test_handshake.py::test_10_07_no_common_connection_…    LP, WS
   8  test_handshake.py::test_10_08_policy_denies_handshake   LP, WS
   9  test_connect.py::test_10_09_first_connect_returns_a…    LP, WS
  10  test_connect.py::test_10_10_connect_with_timeout_ze…    LP, WS
  11  test_connect.py::test_10_11_connect_held_for_timeout    LP, WS
  12  test_connect.py::test_10_12_publish_wakes_held_conn…    LP, WS (deliver_only_on_connect)
  13  test_connect.py::test_10_13_connect_with_queued_eve…    LP, WS
  14  test_connect.py::test_10_14_batched_connect_answere…    LP, WS
  15  test_connect.py::test_10_15_duplicate_connect           LP (HTTP 500), WS (no reply)
  16  test_connect.py::test_10_16_connect_unknown_client      LP, WS
  17  test_connect.py::test_10_17_unknown_client_without_…    LP, WS
  18  test_connect.py::test_10_18_cookie_binding              LP (HTTP cookie)
  19  test_connect.py::test_10_19_session_expires_without…    LP, WS
  20  test_connect.py::test_10_20_held_session_does_not_e…    LP, WS
  21  test_connect.py::test_10_21_disconnect_releases_hel…    LP, WS
  22  test_channels.py::test_10_22_subscribe_string           LP, WS
  23  test_channels.py::test_10_23_subscribe_array            LP, WS
  24  test_channels.py::test_10_24_subscribe_bad_subscrip…    LP, WS
  25  test_channels.py::test_10_25_subscribe_meta_refused     LP, WS
  26  test_channels.py::test_10_26_service_subscribe_not_…    LP, WS
  27  test_channels.py::test_10_27_wildcard_delivery          LP, WS
  28  test_channels.py::test_10_28_one_copy_for_overlappi…    LP, WS
  29  test_channels.py::test_10_29_unsubscribe                LP, WS
  30  test_channels.py::test_10_30_publish_ack                LP, WS
  31  test_channels.py::test_10_31_delivered_event_fields     LP, WS
  32  test_channels.py::test_10_32_publisher_receives_own…    LP, WS
  33  test_channels.py::test_10_33_bad_publish_not_delive…    LP, WS
  34  test_channels.py::test_10_34_message_validation         LP, WS
  35  test_http_surface.py::test_10_35_single_object_body     LP, WS (a one-message frame)
  36  test_http_surface.py::test_10_36_form_bodies            LP (form-urlencoded, text/plain)
  37  test_http_surface.py::test_10_37_bad_body_rejected      LP (HTTP 400), WS (close 1007)
  38  test_http_surface.py::test_10_38_suffixes_behave_al…    LP
  39  test_http_surface.py::test_10_39_cors_preflight         HTTP (OPTIONS + POST)
  40  test_http_surface.py::test_10_40_jsonp                  callback-polling (JSONP)
  41  test_http_surface.py::test_10_41_multiple_clients_p…    LP
  42  test_http_surface.py::test_10_42_body_over_limit        LP (HTTP 413), WS (close 1009)
  43  test_websocket.py::test_10_43_websocket_handshake       WS
  44  test_websocket.py::test_10_44_websocket_push_while_…    WS
  45  test_websocket.py::test_10_45_long_polling_session_…    LP handshake, then WS
  46  test_extensions.py::test_10_46_ack_extension            LP, WS
  47  test_extensions.py::test_10_47_timesync                 LP, WS
  48  test_extensions.py::test_10_48_unknown_ext_ignored      LP, WS
====  ======================================================  =================================

Beyond §10, ``test_bad_input.py`` (LP and WS): every malformed field answered with its Bayeux
error while the rest of its batch is answered, ``data`` absent vs ``null``, a websocket frame
over ``server.max_body_bytes``, batches at and over ``server.max_batch``, hostile bodies
(deep nesting, huge numbers, duplicate keys, NUL, lone surrogates) — after each, the next
valid request must work.  ``test_coverage.py`` checks that this table and the tests agree.

``client.py`` is the raw test client; ``conftest.py`` holds the fixtures and timing bounds.
"""
