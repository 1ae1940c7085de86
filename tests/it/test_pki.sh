#!/usr/bin/env bash
# m5ctl pki init and pki issue (development PKI, TS 33.310-style profile) checked with the openssl
# CLI: chains, SANs, EKUs, validity, key modes, the token signing key, idempotence, --force, the
# refusal to touch a partial PKI or an issued certificate, and usage errors that write nothing.
# Env: M5_BIN (directory holding m5ctl), M5_TMP (scratch directory, recreated here).
set -euo pipefail

: "${M5_BIN:?set M5_BIN to the directory holding m5ctl}"
: "${M5_TMP:?set M5_TMP to a scratch directory}"
rm -rf "$M5_TMP"
mkdir -p "$M5_TMP"
trap 'rm -rf "$M5_TMP"' EXIT

M5CTL="$M5_BIN/m5ctl"
DIR="$M5_TMP/pki"
FILES=(ca.crt ca.key aanf.crt aanf.key m5s.crt m5s.key ausf.crt ausf.key as1.crt as1.key
       gw1.crt gw1.key)
TOKEN=m5s-token.key # m5s's access token signing key: no certificate
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

pki() { timeout 60 "$M5CTL" pki init "$@"; }
issue() { timeout 60 "$M5CTL" pki issue "$@"; }
digests() { (cd "$DIR" && sha256sum "${FILES[@]}" "$TOKEN"); }
digest() { sha256sum <"$1"; }

# check_key PATH: an EC P-256 private key in PKCS#8 PEM, mode 0600.
check_key() {
  local key=$1
  [[ $(stat -c %a "$key") == 600 ]] || fail "$key mode $(stat -c %a "$key"), want 600"
  [[ $(head -n1 "$key") == '-----BEGIN PRIVATE KEY-----' ]] || fail "$key: not PKCS#8 PEM"
  openssl pkey -in "$key" -text -noout | grep -qx 'NIST CURVE: P-256' || fail "$key: not P-256"
}

out=$(pki --dir "$DIR")
[[ $(grep -c '^pki: wrote ' <<<"$out") -eq $((${#FILES[@]} + 1)) ]] ||
  fail "one line per file: $out"
grep -qxF "pki: wrote $DIR/$TOKEN" <<<"$out" || fail "token key not reported: $out"
[[ $(stat -c %a "$DIR") == 700 ]] || fail "directory mode $(stat -c %a "$DIR"), want 700"

for f in "${FILES[@]}" "$TOKEN"; do
  [[ -s "$DIR/$f" ]] || fail "$f missing"
  [[ $f == *.key ]] && check_key "$DIR/$f"
  if [[ $f == *.key && $f != "$TOKEN" ]]; then
    # The key must belong to the certificate next to it.
    [[ "$(openssl pkey -in "$DIR/$f" -pubout)" == \
       "$(openssl x509 -in "$DIR/${f%.key}.crt" -noout -pubkey)" ]] || fail "$f does not match"
  fi
done
ls "$DIR"/*.tmp >/dev/null 2>&1 && fail "temporary files left behind"

ca_text=$(openssl x509 -in "$DIR/ca.crt" -noout -text)
grep -q 'Subject: CN = msgin5g dev CA' <<<"$ca_text" || fail "CA subject"
grep -A1 'Basic Constraints: critical' <<<"$ca_text" | grep -q 'CA:TRUE' ||
  fail "CA basicConstraints"
grep -A1 'Key Usage: critical' <<<"$ca_text" | grep -q 'Certificate Sign, CRL Sign' ||
  fail "CA keyUsage"

# check_leaf NAME PURPOSE SAN EKU [DAYS]: $DIR/NAME.crt, a leaf of $DIR/ca.crt (DAYS: 825).
check_leaf() {
  local name=$1 purpose=$2 san=$3 eku=$4 days=${5:-825} crt="$DIR/$1.crt" text ext
  openssl verify -CAfile "$DIR/ca.crt" "$crt" >/dev/null || fail "$name: does not verify"
  openssl verify -CAfile "$DIR/ca.crt" -purpose "$purpose" "$crt" >/dev/null ||
    fail "$name: not valid for $purpose"
  ext=$(openssl x509 -in "$crt" -noout -ext subjectAltName,extendedKeyUsage)
  grep -qxF "    $san" <<<"$ext" || fail "$name: SAN, got: $ext"
  grep -qxF "    $eku" <<<"$ext" || fail "$name: EKU, got: $ext"
  text=$(openssl x509 -in "$crt" -noout -text)
  grep -q 'Version: 3 (0x2)' <<<"$text" || fail "$name: not X.509 v3"
  grep -q 'Signature Algorithm: ecdsa-with-SHA256' <<<"$text" || fail "$name: signature algorithm"
  grep -q 'NIST CURVE: P-256' <<<"$text" || fail "$name: curve"
  grep -A1 'Key Usage: critical' <<<"$text" | grep -qx ' *Digital Signature' ||
    fail "$name: keyUsage"
  grep -A1 'Basic Constraints: critical' <<<"$text" | grep -q 'CA:FALSE' ||
    fail "$name: basicConstraints"
  grep -q 'Subject Key Identifier' <<<"$text" || fail "$name: SKI"
  grep -q 'Authority Key Identifier' <<<"$text" || fail "$name: AKI"
  # Serial: positive, at most 20 octets (RFC 5280 4.1.2.2).
  local serial
  serial=$(openssl x509 -in "$crt" -noout -serial | cut -d= -f2)
  ((${#serial} <= 40)) || fail "$name: serial longer than 20 octets"
  [[ ${serial:0:1} =~ [0-7] || ${#serial} -lt 40 ]] || fail "$name: serial not positive"
  # DAYS days of validity, from now.
  local start end
  start=$(date -d "$(openssl x509 -in "$crt" -noout -startdate | cut -d= -f2)" +%s)
  end=$(date -d "$(openssl x509 -in "$crt" -noout -enddate | cut -d= -f2)" +%s)
  (((end - start) / 86400 == days)) || fail "$name: validity $(((end - start) / 86400)) days"
  openssl x509 -in "$crt" -noout -checkend $(((days - 1) * 86400)) >/dev/null ||
    fail "$name: expires within $((days - 1)) days"
  openssl x509 -in "$crt" -noout -checkend $(((days + 1) * 86400)) >/dev/null &&
    fail "$name: still valid in $((days + 1)) days"
  # The key next to it belongs to it.
  [[ "$(openssl pkey -in "$DIR/$name.key" -pubout)" == \
     "$(openssl x509 -in "$crt" -noout -pubkey)" ]] || fail "$name.key does not match"
}
check_leaf aanf sslserver 'DNS:localhost, DNS:aanf.localhost, IP Address:127.0.0.1' \
  'TLS Web Server Authentication'
check_leaf m5s sslserver 'DNS:localhost, IP Address:127.0.0.1' \
  'TLS Web Server Authentication, TLS Web Client Authentication'
check_leaf m5s sslclient 'DNS:localhost, IP Address:127.0.0.1' \
  'TLS Web Server Authentication, TLS Web Client Authentication'
check_leaf ausf sslclient 'URI:urn:msgin5g:ausf' 'TLS Web Client Authentication'
check_leaf as1 sslclient 'URI:urn:msgin5g:as:as1' 'TLS Web Client Authentication'
check_leaf gw1 sslclient 'URI:urn:msgin5g:gw:gw1' 'TLS Web Client Authentication'
openssl verify -CAfile "$DIR/ca.crt" -purpose sslserver "$DIR/ausf.crt" >/dev/null 2>&1 &&
  fail "ausf must not be usable as a TLS server"

# A second run keeps everything, the token key included.
before=$(digests)
out=$(pki --dir "$DIR")
[[ $out == "pki: kept existing $DIR" ]] || fail "second run printed: $out"
[[ "$(digests)" == "$before" ]] || fail "second run changed files"

# A PKI made before the token key existed gains one and keeps its certificates.
rm "$DIR/$TOKEN"
old_token=$(grep " $TOKEN\$" <<<"$before" | cut -d' ' -f1)
out=$(pki --dir "$DIR")
[[ $out == "pki: kept existing $DIR"$'\n'"pki: wrote $DIR/$TOKEN" ]] ||
  fail "run without the token key printed: $out"
check_key "$DIR/$TOKEN"
[[ "$(digests | grep -v " $TOKEN\$")" == "$(grep -v " $TOKEN\$" <<<"$before")" ]] ||
  fail "adding the token key changed certificates"
[[ $(digest "$DIR/$TOKEN" | cut -d' ' -f1) != "$old_token" ]] || fail "token key not new"
before=$(digests)

# --force regenerates every file.
out=$(pki --force --dir "$DIR" --fqdn m5s.example.org)
[[ $(grep -c '^pki: wrote ' <<<"$out") -eq $((${#FILES[@]} + 1)) ]] || fail "--force output: $out"
after=$(digests)
for f in "${FILES[@]}" "$TOKEN"; do
  old=$(grep " $f\$" <<<"$before" | cut -d' ' -f1)
  new=$(grep " $f\$" <<<"$after" | cut -d' ' -f1)
  [[ $old != "$new" ]] || fail "--force kept $f"
done
openssl x509 -in "$DIR/m5s.crt" -noout -ext subjectAltName | grep -qxF \
  '    DNS:m5s.example.org, IP Address:127.0.0.1' || fail "--fqdn not in the m5s SAN"
openssl verify -CAfile "$DIR/ca.crt" "$DIR/m5s.crt" >/dev/null || fail "m5s after --force"
check_key "$DIR/$TOKEN"

# pki issue: an AS's client certificate (MSGin5G-3), and a gateway's client certificate plus
# its MSGG listener's server certificate (named by --host), from the CA in --dir.
out=$(issue --as-svc-id as7 --dir "$DIR")
[[ $out == "$DIR/as-as7.crt"$'\n'"$DIR/as-as7.key" ]] || fail "issue --as-svc-id printed: $out"
check_leaf as-as7 sslclient 'URI:urn:msgin5g:as:as7' 'TLS Web Client Authentication'
check_key "$DIR/as-as7.key"
[[ $(openssl x509 -in "$DIR/as-as7.crt" -noout -subject) == 'subject=CN = as7' ]] ||
  fail "as7: subject $(openssl x509 -in "$DIR/as-as7.crt" -noout -subject)"
openssl verify -CAfile "$DIR/ca.crt" -purpose sslserver "$DIR/as-as7.crt" >/dev/null 2>&1 &&
  fail "as7 must not be usable as a TLS server"
out=$(issue --gw-id Gw_7.x-1 --days 30 --dir "$DIR")
[[ $out == "$DIR/gw-Gw_7.x-1.crt"$'\n'"$DIR/gw-Gw_7.x-1.key"$'\n'"$DIR/msgg-Gw_7.x-1.crt"$'\n'"$DIR/msgg-Gw_7.x-1.key" ]] ||
  fail "issue --gw-id printed: $out"
check_leaf gw-Gw_7.x-1 sslclient 'URI:urn:msgin5g:gw:Gw_7.x-1' 'TLS Web Client Authentication' 30
check_key "$DIR/gw-Gw_7.x-1.key"
check_leaf msgg-Gw_7.x-1 sslserver 'URI:urn:msgin5g:gw:Gw_7.x-1, DNS:localhost, IP Address:127.0.0.1' \
  'TLS Web Server Authentication' 30
check_key "$DIR/msgg-Gw_7.x-1.key"
# neither can stand in for the other: a client certificate naming hosts would pass where a
# host name identifies a client (m5gw's pin of m5s, the AAnF's afId)
openssl verify -CAfile "$DIR/ca.crt" -purpose sslserver "$DIR/gw-Gw_7.x-1.crt" >/dev/null 2>&1 &&
  fail "gw-Gw_7.x-1 must not be usable as a TLS server"
openssl verify -CAfile "$DIR/ca.crt" -purpose sslclient "$DIR/msgg-Gw_7.x-1.crt" >/dev/null 2>&1 &&
  fail "msgg-Gw_7.x-1 must not be usable as a TLS client"
[[ "$(openssl pkey -in "$DIR/gw-Gw_7.x-1.key" -pubout)" != \
   "$(openssl pkey -in "$DIR/msgg-Gw_7.x-1.key" -pubout)" ]] || fail "one key for both certificates"
# --host: the listener's names instead of the default ones, host names and IPv4/IPv6 addresses
out=$(issue --gw-id gw5 --host gw5.example.net --host 192.0.2.7 --host 2001:db8::5 --dir "$DIR")
[[ $out == "$DIR/gw-gw5.crt"$'\n'"$DIR/gw-gw5.key"$'\n'"$DIR/msgg-gw5.crt"$'\n'"$DIR/msgg-gw5.key" ]] ||
  fail "issue --gw-id --host printed: $out"
check_leaf gw-gw5 sslclient 'URI:urn:msgin5g:gw:gw5' 'TLS Web Client Authentication'
check_leaf msgg-gw5 sslserver \
  'URI:urn:msgin5g:gw:gw5, DNS:gw5.example.net, IP Address:192.0.2.7, IP Address:2001:DB8:0:0:0:0:0:5' \
  'TLS Web Server Authentication'
openssl verify -CAfile "$DIR/ca.crt" -purpose sslserver -verify_hostname gw5.example.net \
  "$DIR/msgg-gw5.crt" >/dev/null || fail "msgg-gw5: not valid for host gw5.example.net"
openssl verify -CAfile "$DIR/ca.crt" -purpose sslserver -verify_hostname localhost \
  "$DIR/msgg-gw5.crt" >/dev/null 2>&1 && fail "msgg-gw5 names localhost without --host localhost"
id64=$(printf 'a%.0s' {1..64})
issue --as-svc-id "$id64" --days 1095 --dir "$DIR" >/dev/null || fail "64-character ID refused"
check_leaf "as-$id64" sslclient "URI:urn:msgin5g:as:$id64" 'TLS Web Client Authentication' 1095
ls "$DIR"/*.tmp >/dev/null 2>&1 && fail "issue left temporary files behind"
# Issued certificates are not part of the set init manages.
[[ $(pki --dir "$DIR") == "pki: kept existing $DIR" ]] || fail "init after issue"

# --force replaces an issued certificate and its key.
as7_before=$(digest "$DIR/as-as7.crt")$(digest "$DIR/as-as7.key")
issue --as-svc-id as7 --dir "$DIR" --force >/dev/null || fail "issue --force failed"
[[ $(digest "$DIR/as-as7.crt")$(digest "$DIR/as-as7.key") != "$as7_before" ]] ||
  fail "issue --force kept as-as7"
check_leaf as-as7 sslclient 'URI:urn:msgin5g:as:as7' 'TLS Web Client Authentication'

# expect_refusal RC WORD ARGS...: pki issue ARGS exits RC with one line on stderr containing
# WORD, prints nothing and changes nothing in $DIR.
state() { (cd "$DIR" && ls -A && sha256sum -- *); }
expect_refusal() {
  local want=$1 word=$2 rc=0 before
  shift 2
  before=$(state)
  issue "$@" >"$M5_TMP/out" 2>"$M5_TMP/err" || rc=$?
  [[ $rc -eq $want ]] || fail "issue $*: exit $rc, want $want"
  [[ $(wc -l <"$M5_TMP/err") -eq 1 ]] || fail "issue $*: stderr: $(cat "$M5_TMP/err")"
  grep -qF -- "$word" "$M5_TMP/err" || fail "issue $*: message: $(cat "$M5_TMP/err")"
  [[ ! -s "$M5_TMP/out" ]] || fail "issue $*: printed $(cat "$M5_TMP/out")"
  [[ "$(state)" == "$before" ]] || fail "issue $*: changed $DIR"
}
# Usage errors: exit 2.
expect_refusal 2 --as-svc-id --dir "$DIR" --as-svc-id ''
expect_refusal 2 --as-svc-id --dir "$DIR" --as-svc-id 'a b'
expect_refusal 2 --as-svc-id --dir "$DIR" --as-svc-id 'a/b'
expect_refusal 2 --as-svc-id --dir "$DIR" --as-svc-id "${id64}b"
expect_refusal 2 --gw-id --dir "$DIR" --gw-id '../x'
expect_refusal 2 --days --dir "$DIR" --as-svc-id as8 --days 2000
expect_refusal 2 --days --dir "$DIR" --as-svc-id as8 --days 1096
expect_refusal 2 --days --dir "$DIR" --as-svc-id as8 --days 0
expect_refusal 2 --gw-id --dir "$DIR" --as-svc-id as8 --gw-id gw8
expect_refusal 2 --host --dir "$DIR" --as-svc-id as8 --host localhost
expect_refusal 2 --host --dir "$DIR" --gw-id gw8 --host 'bad_name'
expect_refusal 2 --host --dir "$DIR" --gw-id gw8 --host 'a..b'
expect_refusal 2 --host --dir "$DIR" --gw-id gw8 --host ''
expect_refusal 2 'at most 8' --dir "$DIR" --gw-id gw8 $(printf -- '--host h%d ' {1..9})
expect_refusal 2 --as-svc-id --dir "$DIR"
expect_refusal 2 --as-svc-id --dir "$DIR" --as-svc-id
expect_refusal 2 --bogus --dir "$DIR" --as-svc-id as8 --bogus
expect_refusal 2 extra --dir "$DIR" --as-svc-id as8 extra
# Refusals of the operation: exit 1, as for init's partial PKI.
expect_refusal 1 --force --dir "$DIR" --as-svc-id as7
# either of a gateway's two files present: both are kept (an all-or-nothing set)
rm "$DIR/gw-gw5.crt" "$DIR/gw-gw5.key"
expect_refusal 1 "msgg-gw5.crt exists" --dir "$DIR" --gw-id gw5
expect_refusal 1 'pki init' --dir "$M5_TMP/nopki" --as-svc-id as8
[[ -e "$M5_TMP/nopki" ]] && fail "issue without a CA created $M5_TMP/nopki"

# A CA made by openssl: pki issue signs with it, but never past its end.
mkdir "$M5_TMP/short"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=short CA' \
  -days 10 -keyout "$M5_TMP/short/ca.key" -out "$M5_TMP/short/ca.crt" 2>/dev/null
main_dir=$DIR
DIR="$M5_TMP/short"
expect_refusal 1 'expires before' --dir "$DIR" --gw-id gw8 --days 30
issue --dir "$DIR" --gw-id gw8 --days 5 >/dev/null || fail "issue from the openssl CA failed"
check_leaf gw-gw8 sslclient 'URI:urn:msgin5g:gw:gw8' 'TLS Web Client Authentication' 5
check_leaf msgg-gw8 sslserver 'URI:urn:msgin5g:gw:gw8, DNS:localhost, IP Address:127.0.0.1' \
  'TLS Web Server Authentication' 5
cp "$main_dir/ca.key" "$DIR/ca.key"
expect_refusal 1 'does not belong' --dir "$DIR" --gw-id gw9
DIR=$main_dir

# A partial PKI is neither kept nor overwritten (nor given a token key) without --force.
rm "$DIR/gw1.key" "$DIR/$TOKEN"
before=$(cd "$DIR" && sha256sum ca.key)
rc=0
pki --dir "$DIR" >/dev/null 2>"$M5_TMP/err" || rc=$?
[[ $rc -eq 1 ]] || fail "partial PKI: exit $rc, want 1"
{ grep -q 'gw1.key' "$M5_TMP/err" && grep -q -- '--force' "$M5_TMP/err"; } ||
  fail "partial PKI message: $(cat "$M5_TMP/err")"
[[ "$(cd "$DIR" && sha256sum ca.key)" == "$before" ]] || fail "partial PKI was modified"
[[ -e "$DIR/$TOKEN" ]] && fail "partial PKI was given a token key"

# Usage errors: exit 2, one line.
rc=0
pki --dir "$DIR" --bogus >/dev/null 2>"$M5_TMP/err" || rc=$?
[[ $rc -eq 2 && $(wc -l <"$M5_TMP/err") -eq 1 ]] || fail "--bogus: exit $rc"
rc=0
pki --dir "$DIR" --fqdn 'bad_name' >/dev/null 2>"$M5_TMP/err" || rc=$?
{ [[ $rc -eq 2 ]] && grep -q -- '--fqdn' "$M5_TMP/err"; } || fail "--fqdn bad_name: exit $rc"

if ((failures)); then
  echo "test_pki: $failures failure(s)" >&2
  exit 1
fi
echo "test_pki: ok"
