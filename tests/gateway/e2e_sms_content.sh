#!/usr/bin/env bash
# The SMS gateway end to end, what a message carries both ways between the UE ue1 (m5c) and
# the SMS device sm1, through the real m5s, m5-aanf and m5gw of kind sms, and the npm `smpp`
# SMSC (e2e_sms_smsc.mjs). Each submit_sm is checked field by field at the SMSC and each
# message as ue1 receives it:
#  - UE -> device: GSM 7-bit text (data_coding 0, unpacked septets, extension characters as
#    0x1B pairs), UCS-2 text (data_coding 8, UTF-16BE), binary (data_coding 4, the octets), a
#    long GSM text and a long UCS-2 text as concatenated SMS (esm_class UDHI, UDH 05 00 03 ref
#    total seq, one reference per message, 153 septets / 67 characters a part); source_addr is
#    ue1's route 2000 (TON unknown), destination the device's MSISDN (TON international); a
#    report asked for on the long one comes back once, when both parts have their receipt;
#  - device -> UE: GSM (data_coding 0, unpacked), UCS-2, 8-bit data (the bytes, no text), a
#    GSM concatenated SMS sent out of order (8-bit reference) and a UCS-2 one (16-bit
#    reference) each reach ue1 as one message, every part answered ESME_ROK.
# (core_e2e_sms.sh has the first round trip with a report asked for by the UE.)
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/e2e_sms_lib.bash"

e2e_sms_setup
smsc receipts DELIVRD

# ---- UE -> device ----------------------------------------------------------------------------
mt() { # TEXT N_SUBMITS_AFTER [m5c send options]
  local text=$1 want=$2
  shift 2
  ue_send send.out "$text" "$@"
  for ((i = 0; i < 300; i++)); do
    (($(smsc_count '^SUBMIT ') >= want)) && return 0
    sleep 0.1
  done
  m5s_fail "no submit_sm for '$text': $(tail -5 "$SMSC_OUT"; gw_tail)"
}
# common to every downlink SMS: from ue1's route, to sm1's MSISDN, answered OK
base='S.every((s) => s.source_addr === "2000" && s.source_addr_ton === 0 && s.source_addr_npi === 1 &&
  s.destination_addr === "'$SM1'" && s.dest_addr_ton === 1 && s.dest_addr_npi === 1 && s.status === 0)'

GSM_TEXT='Hello @ sm1 {€} ~[x]'
mt "$GSM_TEXT" 1
submits_check "L.length === 1 && (S => $base)(L) && L[0].data_coding === 0 && L[0].esm_class === 0 &&
  L[0].udh === '' && L[0].registered_delivery === 0 &&
  L[0].sm === '48656c6c6f200020736d31201b281b651b29201b3d1b3c781b3e'" "GSM 7-bit"

UCS_TEXT='Привет ☃ sm1'
mt "$UCS_TEXT" 2
submits_check "(S => $base)(L) && L[1].data_coding === 8 && L[1].esm_class === 0 &&
  L[1].sm === '$(ucs2of "$UCS_TEXT")' && L[1].text === '$UCS_TEXT'" "UCS-2"

mt $'\x01\x02\xfe\xff\x80bin' 3
submits_check "(S => $base)(L) && L[2].data_coding === 4 && L[2].esm_class === 0 &&
  L[2].sm === '0102feff80' + '62696e' && L[2].text === null" "8-bit data"

LONG_UCS=$(for i in $(seq 1 10); do printf 'Часть %02d. ' "$i"; done) # 100 characters
mt "$LONG_UCS" 5
submits_check "(S => $base)(L) && L[3].data_coding === 8 && L[4].data_coding === 8 &&
  L[3].esm_class === 0x40 && L[4].esm_class === 0x40 &&
  L[3].udh.length === 12 && L[3].udh.slice(0, 6) === '050003' && L[3].udh.slice(8) === '0201' &&
  L[4].udh === L[3].udh.slice(0, 8) + '0202' && L[3].sm.length === 2 * 134 &&
  L[3].text + L[4].text === '$LONG_UCS'" "long UCS-2 text as concatenated SMS"
# last of the UE's sends: its report must reach the listener below, not a later m5c send
LONG_GSM=$(for i in $(seq 1 25); do printf 'line %02d;' "$i"; done) # 200 characters
mt "$LONG_GSM" 7 --report
LONG_ID=$MSGID
submits_check "(S => $base)(L) && L[5].udh.slice(0, 6) === '050003' && L[5].udh.slice(8) === '0201' &&
  L[6].udh === L[5].udh.slice(0, 8) + '0202' && L[5].udh.slice(6, 8) !== L[3].udh.slice(6, 8) &&
  L[5].esm_class === 0x40 && L[6].esm_class === 0x40 && L[5].data_coding === 0 &&
  L[6].data_coding === 0 && L[5].text.length === 153 && L[5].text + L[6].text === '$LONG_GSM' &&
  L[5].registered_delivery === 1 && L[6].registered_delivery === 1" "long GSM text as concatenated SMS"
smsc_wait "^RECEIPT m7 0$" 10 "receipts acknowledged"
echo "ok: UE -> device: GSM 7-bit, UCS-2, 8-bit data, concatenated GSM and UCS-2"

# ue1 listens for the report and the 5 device messages (not before: an m5c send replaces the
# UE's session, and what m5s pushes then goes to the sending m5c)
m5c_listen_bg ue1 tls listen.out 6 40
LISTEN_PID=$M5C_LISTEN_PID

# ---- device -> UE ----------------------------------------------------------------------------
# GSM 03.38 unpacked: h e l l o _ u e 1 _ @ £ $ _ { o k }
smsc mo g "$SM1" 2000 0 68656c6c6f2075653120000102201b286f6b1b29
smsc mo u "$SM1" 2000 8 "$(ucs2of 'Привет ue1 ☃')"
smsc mo b "$SM1" 2000 4 0001ff807f
# concatenated, 8-bit reference 0x7a, 3 parts sent 2, 3, 1
P1=$(hexof 'first part, ') P2=$(hexof 'second part, ') P3=$(hexof 'third part.')
smsc mo c2 "$SM1" 2000 0 0500037a0302"$P2" esm_class=0x40
smsc mo c3 "$SM1" 2000 0 0500037a0303"$P3" esm_class=0x40
smsc mo c1 "$SM1" 2000 0 0500037a0301"$P1" esm_class=0x40
# concatenated UCS-2, 16-bit reference 0x1234 (IE 0x08), 2 parts
smsc mo w1 "$SM1" 2000 8 06080412340201"$(ucs2of 'Часть один, ')" esm_class=0x40
smsc mo w2 "$SM1" 2000 8 06080412340202"$(ucs2of 'часть два')" esm_class=0x40
for tag in g u b c1 c2 c3 w1 w2; do
  smsc_wait "^MORESP $tag 0$" 30 "deliver_sm $tag answered ESME_ROK"
done

wait_pid_rc "$LISTEN_PID" 40
[[ $WAIT_RC == 0 ]] || m5s_fail "ue1 did not get 6 messages and reports: $(cat listen.out)"
from_sm1='(m) => m.oriAddr.addrType === "UE" && m.oriAddr.addr === "sm1" &&
  m.destAddr.addrType === "UE" && m.destAddr.addr === "ue1"'
msgs="L.filter((m) => m.msgType !== 'IMDN')"
jcheck listen.out "$msgs.length === 5 && $msgs.every($from_sm1)" "device messages from sm1 to ue1"
jcheck listen.out "$msgs.filter((m) => m.payloadText === 'hello ue1 @£\$ {ok}').length === 1" "GSM 7-bit"
jcheck listen.out "$msgs.filter((m) => m.payloadText === 'Привет ue1 ☃').length === 1" "UCS-2"
jcheck listen.out "$msgs.filter((m) => m.payload === 'AAH/gH8=' && m.payloadText === undefined).length === 1" "8-bit data"
jcheck listen.out "$msgs.filter((m) => m.payloadText === 'first part, second part, third part.').length === 1" \
  "concatenated GSM reassembled"
jcheck listen.out "$msgs.filter((m) => m.payloadText === 'Часть один, часть два').length === 1" \
  "concatenated UCS-2 reassembled"
jcheck listen.out "L.filter((m) => m.msgType === 'IMDN').length === 1 && L.some((m) => m.msgType === 'IMDN' &&
  m.msgId === '$LONG_ID' && m.oriAddr.addr === 'sm1' && m.delivSt === 'REPT_DELY_SUCCESS')" \
  "one report on the long message"
echo "ok: device -> UE: GSM 7-bit, UCS-2, 8-bit data, concatenated SMS reassembled"

wait_spool 0 10 || fail "the spool is not empty: $(cat "$M5_TMP/health.json")"
stop_daemon "$GW_PID" m5gw || fail "m5gw did not stop cleanly"
echo "PASS"
