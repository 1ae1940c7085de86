#!/usr/bin/env bash
# Integration: m5s's northbound listener (MSGin5G-3 for Application Servers, docs/northbound.md)
# with curl over HTTP/2 and client certificates:
#  - TLS: no client certificate, or one from another CA, is refused in the handshake; a client
#    whose ALPN offers only http/1.1 gets no_application_protocol;
#  - the token endpoint (client credentials, the client known by its certificate, RFC 8705):
#    a token for a configured AS client, none for an unknown one, every bad request with its
#    RFC 6749 error; JWKS and RFC 8414 metadata;
#  - MSGS_ASRegistration: register with the token (201 + Location + ASRegistrationAck, valid
#    against TS 29.538), deregister (204), and each refusal: no token, a malformed, wrong-scope
#    or another certificate's token (RFC 6750 WWW-Authenticate), another asSvcId, a targetUri
#    off the allow-list or naming m5s itself, bad bodies and content types.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

make_pki
make_cert as2 URI:urn:msgin5g:as:as2
make_cert nobody URI:urn:msgin5g:as:nobody
start_aanf
start_m5s
PKI=$M5_TMP/pki
NB="https://localhost:$M5S_NORTH"
ASREG=/msgs-asregistration/v1/registrations

# nb AS METHOD PATH [curl args...]: HTTP/2 with AS's certificate ("-": none) -> $ST, body in
# out.json, headers in hdr.txt.
nb() {
  local as=$1 method=$2 path=$3 auth=()
  shift 3
  [[ $as == - ]] || auth=(--cert "$PKI/$as.crt" --key "$PKI/$as.key")
  ST=$(curl -s --http2 --max-time 10 --cacert "$PKI/ca.crt" "${auth[@]}" -X "$method" \
    -D hdr.txt -o out.json -w '%{http_code}' "$@" "$NB$path") || ST="curl-exit-$?"
}
want() {
  [[ $ST == "$1" ]] || m5s_fail "want $1, got $ST: $(cat out.json 2>/dev/null)"
  # every ProblemDetails m5s answers carries only the members TS 29.571 declares
  if grep -qi '^content-type: application/problem+json' hdr.txt 2>/dev/null; then
    validate_sent TS29571_CommonData.yaml ProblemDetails out.json
  fi
}
field() { json_get out.json "$1"; }
token() { # AS [SCOPE]: an access token for AS
  local form="grant_type=client_credentials"
  [[ -n ${2:-} ]] && form+="&scope=$2"
  nb "$1" POST /oauth2/token -H 'content-type: application/x-www-form-urlencoded' -d "$form"
  want 200
  TOKEN=$(field access_token)
}
admin_put() { # ID TARGETS_JSON
  local st
  st=$(admin_curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'content-type: application/json' \
    -d "{\"targets\":$2}" "$M5S_ADMIN/admin/v1/as-clients/$1")
  [[ $st == 200 || $st == 201 ]] || m5s_fail "admin PUT as-clients/$1: $st"
}

# ---- TLS ------------------------------------------------------------------------------------
nb - GET /.well-known/jwks.json
[[ $ST == curl-exit-* || $ST == 000 ]] || m5s_fail "no client certificate: want a refused handshake, got $ST"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=rogue -days 1 \
  -addext subjectAltName=URI:urn:msgin5g:as:as1 -keyout "$PKI/rogue.key" -out "$PKI/rogue.crt" 2>/dev/null
nb rogue GET /.well-known/jwks.json
[[ $ST == curl-exit-* || $ST == 000 ]] || m5s_fail "self-signed client certificate: want refused, got $ST"
# an RSA-1024 client certificate from the right CA: below TS 33.310's RSA-2048
openssl req -new -newkey rsa:1024 -nodes -subj /CN=weak -keyout "$PKI/weak.key" -out "$PKI/weak.csr" 2>/dev/null
printf 'subjectAltName=URI:urn:msgin5g:as:as1\nextendedKeyUsage=clientAuth\n' >"$PKI/weak.ext"
openssl x509 -req -in "$PKI/weak.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 1 \
  -sha256 -extfile "$PKI/weak.ext" -out "$PKI/weak.crt" 2>/dev/null
nb weak GET /.well-known/jwks.json
[[ $ST == curl-exit-* || $ST == 000 ]] || m5s_fail "RSA-1024 client certificate: want refused, got $ST"
alpn=$(timeout 10 openssl s_client -connect "127.0.0.1:$M5S_NORTH" -alpn http/1.1 \
  -cert "$PKI/as1.crt" -key "$PKI/as1.key" -CAfile "$PKI/ca.crt" </dev/null 2>&1 || true)
grep -qi "no application protocol\|alert number 120" <<<"$alpn" ||
  m5s_fail "ALPN http/1.1 only: want no_application_protocol: $alpn"
echo "ok: handshake refused without a CA-signed client certificate, with an RSA-1024 one, and without h2 in ALPN"

# ---- token endpoint ---------------------------------------------------------------------------
FORM=(-H 'content-type: application/x-www-form-urlencoded')
nb as1 POST /oauth2/token "${FORM[@]}" -d grant_type=client_credentials
want 401
[[ $(field error) == invalid_client ]] || m5s_fail "unknown AS: $(cat out.json)"
admin_put as1 "[\"127.0.0.1:9\",\"localhost:$M5S_NORTH\",\"localhost:$M5S_MGMT\",\"127.0.0.2:$M5S_NORTH\",\"[0::1]:$M5S_PORT\"]"
admin_put as2 '["127.0.0.1:9"]'
nb as1 POST /oauth2/token "${FORM[@]}" -d grant_type=client_credentials
want 200
[[ $(field token_type) == Bearer && $(field scope) == "msgs-asregistration msgs-msgdelivery ss-gm msgs-topicsub" &&
  $(field expires_in) == 300 ]] || m5s_fail "token answer: $(cat out.json)"
grep -qi '^cache-control: no-store' hdr.txt || m5s_fail "token answer without Cache-Control: no-store"
TOKEN1=$(field access_token)
for bad in "grant_type=password" "x=1" "grant_type=client_credentials&grant_type=client_credentials" \
  "grant_type=client_credentials&scope=admin" "grant_type=client_credentials&client_id=as2" \
  "grant_type=client_credentials&client_secret=s" "grant_type=client_credentials&scope=%ZZ"; do
  nb as1 POST /oauth2/token "${FORM[@]}" -d "$bad"
  [[ $ST == 400 || $ST == 401 ]] || m5s_fail "$bad: want 400/401, got $ST"
  [[ -n $(field error) ]] || m5s_fail "$bad: no RFC 6749 error: $(cat out.json)"
done
nb as1 POST /oauth2/token -H 'content-type: application/json' -d '{}'
want 400
nb as1 POST /oauth2/token -H 'content-type: application/x-www-form-urlencodedXYZ' \
  -d grant_type=client_credentials
want 400
# RFC 6749 §3.1/§3.2: parameters we do not know are ignored (even long ones, or without '='),
# an empty value counts as omitted
nb as1 POST /oauth2/token "${FORM[@]}" \
  -d "grant_type=client_credentials&client_id=&flag&an_unknown_parameter_with_a_long_name=$(printf 'v%.0s' {1..900})"
want 200
nb as1 DELETE /.well-known/jwks.json
want 405
nb as1 GET /oauth2/token
want 405
nb as1 GET /.well-known/jwks.json
want 200
grep -q '"kty":"EC"' out.json && ! grep -q '"d"' out.json || m5s_fail "JWKS: $(cat out.json)"
nb as1 GET /.well-known/oauth-authorization-server
want 200
[[ $(field issuer) == "$NB" && $(field token_endpoint) == "$NB/oauth2/token" ]] ||
  m5s_fail "metadata: $(cat out.json)"
echo "ok: token endpoint, JWKS, metadata"

# ---- MSGS_ASRegistration ----------------------------------------------------------------------
JSON=(-H 'content-type: application/json')
REG='{"asSvcId":"as1","appId":"meter-app","targetUri":"https://127.0.0.1:9/msgin5g"}'
nb as1 POST $ASREG "${JSON[@]}" -d "$REG"
want 401
grep -qi '^www-authenticate: Bearer realm="msgin5g"' hdr.txt || m5s_fail "no challenge: $(cat hdr.txt)"
nb as1 POST $ASREG "${JSON[@]}" -H "authorization: Bearer x.y.z" -d "$REG"
want 401
grep -qi 'error="invalid_token"' hdr.txt || m5s_fail "malformed token: $(cat hdr.txt)"
token as1 msgs-msgdelivery
nb as1 POST $ASREG "${JSON[@]}" -H "authorization: Bearer $TOKEN" -d "$REG"
want 403
grep -qi 'error="insufficient_scope"' hdr.txt || m5s_fail "wrong scope: $(cat hdr.txt)"
nb as2 POST $ASREG "${JSON[@]}" -H "authorization: Bearer $TOKEN1" -d '{"asSvcId":"as2"}'
want 401 # as1's token is bound to as1's certificate
nb nobody POST $ASREG "${JSON[@]}" -H "authorization: Bearer $TOKEN1" -d '{"asSvcId":"nobody"}'
want 403
A="authorization: Bearer $TOKEN1"
nb as1 POST $ASREG "${JSON[@]}" -H "$A" -d '{"asSvcId":"as2"}'
want 403
nb as1 POST $ASREG "${JSON[@]}" -H "$A" -d '{"asSvcId":"as1","targetUri":"https://127.0.0.1:10/x"}'
want 403
# allowed by the list, but m5s itself (its three ports, in several spellings of itself)
for own in "localhost:$M5S_NORTH" "localhost:$M5S_MGMT" "127.0.0.2:$M5S_NORTH" "[0::1]:$M5S_PORT"; do
  nb as1 POST $ASREG "${JSON[@]}" -H "$A" -d "{\"asSvcId\":\"as1\",\"targetUri\":\"https://$own/x\"}"
  want 403
  grep -q "own listener" out.json || m5s_fail "$own: $(cat out.json)"
done
nb as1 POST $ASREG "${JSON[@]}" -H "$A" -d '{"asSvcId":"as1","targetUri":"http://127.0.0.1:9/x"}'
want 400
for bad in '{}' '{"asSvcId":7}' '[1]' 'nope' '{"asSvcId":"as1","asSvcId":"as1"}' \
  '{"asSvcId":"as1","asProf":3}'; do
  nb as1 POST $ASREG "${JSON[@]}" -H "$A" -d "$bad"
  want 400
  validate_sent TS29571_CommonData.yaml ProblemDetails out.json
done
nb as1 POST $ASREG -H 'content-type: text/plain' -H "$A" -d "$REG"
want 415
head -c 70000 /dev/zero | tr '\0' ' ' >big.json # over the 64 KiB body limit
nb as1 POST $ASREG "${JSON[@]}" -H "$A" --data-binary @big.json
want 413
nb as1 POST $ASREG "${JSON[@]}" -H "$A" -d '{"asSvcId":"as1","appId":"no-callback"}'
want 201 # targetUri is optional
echo "$REG" >req.json
validate TS29538_MSGS_ASRegistration.yaml ASRegistration req.json
nb as1 POST $ASREG "${JSON[@]}" -H "$A" -d "$REG"
want 201
validate_sent TS29538_MSGS_ASRegistration.yaml ASRegistrationAck out.json
LOC=$(sed -n 's/^location: *//Ip' hdr.txt | tr -d '\r')
[[ $LOC == "$NB$ASREG/"* ]] || m5s_fail "Location: '$LOC'"
admin_curl -s "$M5S_ADMIN/admin/v1/as-clients/as1" | grep -q '"registered":true' ||
  m5s_fail "the admin API does not show the registration"
nb as1 DELETE "${LOC#"$NB"}" -H "$A"
want 204
nb as1 DELETE "${LOC#"$NB"}" -H "$A"
want 404
nb as1 GET $ASREG -H "$A"
want 405
echo "ok: AS registration with a bound token; every refusal"
stop_m5s
