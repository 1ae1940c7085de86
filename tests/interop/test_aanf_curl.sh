#!/usr/bin/env bash
# Interop: m5-aanf's Naanf_AKMA (TS 29.535) driven by curl over HTTP/2 with client
# certificates. The AUSF role registers K_AKMA through `m5ctl subscriber add`; curl, as the AF
# "localhost", retrieves K_AF, which must equal the UE-side derivation of `m5ctl akma derive`
# (TS 33.535 A.4) for TLS 1.3 and for a TLS 1.2 suite (our uaSecProtId extension). Every
# request and response body is checked against the 3GPP OpenAPI schemas.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

SUPI=001010123456789
KAUSF=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
KAUSF2=f0e0d0c0b0a090807060504030201000ffeeddccbbaa99887766554433221100
LIFETIME=600

make_pki
start_aanf "kaf: {lifetime_s: $LIFETIME}"
M5CTL="$M5_BIN/m5ctl"

derive() { # derive KAUSF UA: prints the akid and kaf lines of m5ctl akma derive
  "$M5CTL" akma derive --supi "$SUPI" --kausf "$1" --af-fqdn localhost --ua "$2"
}
field() { sed -n "s/^$1=//p"; }

# --- AnchorKey_Register through m5ctl (HTTP/2 + AUSF client certificate) ---
out=$("$M5CTL" subscriber add --supi "$SUPI" --kausf "$KAUSF" --aanf "$AANF_URL" \
  --pki "$M5_TMP/pki")
AKID=$(derive "$KAUSF" tls13 | field akid)
[[ $out == "registered supi=$SUPI akid=$AKID" ]] || fail "subscriber add printed: $out"

# The same registration by curl, to check the request and the 200 AkmaKeyInfo bodies.
KAKMA=$(derive "$KAUSF" tls13 | field kakma)
printf '{"supi":"imsi-%s","aKId":"%s","kAkma":"%s"}' "$SUPI" "$AKID" "$KAKMA" >reg.json
validate TS29535_Naanf_AKMA.yaml AkmaKeyInfo reg.json
st=$(aanf_post register-anchorkey reg.json ausf reg.out)
[[ $st == 200 ]] || fail "register-anchorkey: $st $(cat reg.out)"
validate_sent TS29535_Naanf_AKMA.yaml AkmaKeyInfo reg.out
[[ $(json_get reg.out aKId) == "$AKID" && $(json_get reg.out supi) == "imsi-$SUPI" &&
   $(json_get reg.out kAkma) == "$KAKMA" ]] || fail "register echo: $(cat reg.out)"

# --- ApplicationKey_Get: TLS 1.3 (uaSecProtId absent = 0100000007) ---
printf '{"afId":"localhost","aKId":"%s"}' "$AKID" >get13.json
validate TS29522_AKMA.yaml AkmaAfKeyRequest get13.json
before=$(date -u +%s)
st=$(aanf_post retrieve-applicationkey get13.json m5s get13.out)
after=$(date -u +%s)
[[ $st == 200 ]] || fail "retrieve (tls13): $st $(cat get13.out)"
validate_sent TS29522_AKMA.yaml AkmaAfKeyData get13.out
[[ $(json_get get13.out kaf) == "$(derive "$KAUSF" tls13 | field kaf)" ]] ||
  fail "K_AF (TLS 1.3) differs from m5ctl akma derive: $(json_get get13.out kaf)"
[[ $(json_get get13.out supi) == "imsi-$SUPI" ]] || fail "supi: $(cat get13.out)"
expiry=$(date -u -d "$(json_get get13.out expiry)" +%s)
((expiry >= before + LIFETIME - 1 && expiry <= after + LIFETIME + 1)) ||
  fail "expiry $(json_get get13.out expiry) is not now + ${LIFETIME}s"
[[ $(json_get get13.out expiry) =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]] ||
  fail "expiry is not RFC 3339 UTC: $(json_get get13.out expiry)"

# --- TLS 1.2 PSK-AES128-GCM-SHA256 (Ua* id 01 00 01 00 a8), explicit uaSecProtId ---
printf '{"afId":"localhost","aKId":"%s","uaSecProtId":"01000100a8"}' "$AKID" >get12.json
st=$(aanf_post retrieve-applicationkey get12.json m5s get12.out)
[[ $st == 200 ]] || fail "retrieve (tls12): $st $(cat get12.out)"
validate_sent TS29522_AKMA.yaml AkmaAfKeyData get12.out
[[ $(json_get get12.out kaf) == "$(derive "$KAUSF" tls12:00a8 | field kaf)" ]] ||
  fail "K_AF (TLS 1.2, 0x00A8) differs from m5ctl akma derive"
[[ $(json_get get12.out kaf) != "$(json_get get13.out kaf)" ]] || fail "Ua* id ignored"

# --- anonymous access: K_AF without the SUPI ---
printf '{"afId":"localhost","aKId":"%s","anonInd":true}' "$AKID" >anon.json
validate TS29522_AKMA.yaml AkmaAfKeyRequest anon.json
st=$(aanf_post retrieve-applicationkey anon.json m5s anon.out)
[[ $st == 200 ]] || fail "retrieve (anon): $st"
validate_sent TS29522_AKMA.yaml AkmaAfKeyData anon.out
[[ -z $(json_get anon.out supi) ]] || fail "anonInd answered with a supi: $(cat anon.out)"

# --- unknown A-KID: 204, no body ---
printf '{"afId":"localhost","aKId":"0000.unknown@5gc.mnc001.mcc001.3gppnetwork.org"}' >unk.json
st=$(aanf_post retrieve-applicationkey unk.json m5s unk.out)
[[ $st == 204 && ! -s unk.out ]] || fail "unknown A-KID: $st $(cat unk.out)"

# --- re-registration (TS 33.535 6.1 step 5) replaces the old context ---
"$M5CTL" subscriber add --supi "$SUPI" --kausf "$KAUSF2" --aanf "$AANF_URL" \
  --pki "$M5_TMP/pki" >/dev/null
AKID2=$(derive "$KAUSF2" tls13 | field akid)
st=$(aanf_post retrieve-applicationkey get13.json m5s old.out)
[[ $st == 204 ]] || fail "old A-KID after re-registration: $st"
printf '{"afId":"localhost","aKId":"%s"}' "$AKID2" >get2.json
st=$(aanf_post retrieve-applicationkey get2.json m5s get2.out)
[[ $st == 200 ]] || fail "new A-KID: $st"
[[ $(json_get get2.out kaf) == "$(derive "$KAUSF2" tls13 | field kaf)" ]] || fail "new K_AF"

# --- Context_Remove: 204, then retrieve 204, then remove again 404 ---
printf '{"supi":"imsi-%s"}' "$SUPI" >rm.json
validate TS29535_Naanf_AKMA.yaml CtxRemove rm.json
st=$(aanf_post remove-context rm.json ausf rm.out)
[[ $st == 204 ]] || fail "remove-context: $st $(cat rm.out)"
st=$(aanf_post retrieve-applicationkey get2.json m5s gone.out)
[[ $st == 204 ]] || fail "retrieve after remove: $st"
st=$(aanf_post remove-context rm.json ausf rm2.out)
[[ $st == 404 ]] || fail "second remove-context: $st"
expect_problem rm2.out 404 CONTEXT_NOT_FOUND

# Key material must never reach the log.
for k in "$KAKMA" "$(json_get get13.out kaf)" "$(json_get get12.out kaf)" "$KAUSF"; do
  grep -qi "$k" "$AANF_LOG" && fail "a key appears in the AAnF log"
done
grep -q "POST /naanf-akma/v1/retrieve-applicationkey 200 caller=localhost" "$AANF_LOG" ||
  fail "no request log line for the AF"

stop_aanf
echo "aanf curl interop: ok"
