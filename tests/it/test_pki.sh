#!/usr/bin/env bash
# m5ctl pki init (development PKI, TS 33.310-style profile) checked with the openssl CLI:
# chains, SANs, EKUs, key modes, idempotence, --force and the refusal to touch a partial PKI.
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
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

pki() { timeout 60 "$M5CTL" pki init "$@"; }
digests() { (cd "$DIR" && sha256sum "${FILES[@]}"); }

out=$(pki --dir "$DIR")
[[ $(grep -c '^pki: wrote ' <<<"$out") -eq ${#FILES[@]} ]] || fail "one line per file: $out"
[[ $(stat -c %a "$DIR") == 700 ]] || fail "directory mode $(stat -c %a "$DIR"), want 700"

for f in "${FILES[@]}"; do
  [[ -s "$DIR/$f" ]] || fail "$f missing"
  if [[ $f == *.key ]]; then
    [[ $(stat -c %a "$DIR/$f") == 600 ]] || fail "$f mode $(stat -c %a "$DIR/$f"), want 600"
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

# check_leaf NAME PURPOSE SAN EKU
check_leaf() {
  local name=$1 purpose=$2 san=$3 eku=$4 crt="$DIR/$1.crt" text ext
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
  # 825 days of validity.
  local start end
  start=$(date -d "$(openssl x509 -in "$crt" -noout -startdate | cut -d= -f2)" +%s)
  end=$(date -d "$(openssl x509 -in "$crt" -noout -enddate | cut -d= -f2)" +%s)
  (((end - start) / 86400 == 825)) || fail "$name: validity $(((end - start) / 86400)) days"
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

# A second run keeps everything.
before=$(digests)
out=$(pki --dir "$DIR")
[[ $out == "pki: kept existing $DIR" ]] || fail "second run printed: $out"
[[ "$(digests)" == "$before" ]] || fail "second run changed files"

# --force regenerates every file.
out=$(pki --force --dir "$DIR" --fqdn m5s.example.org)
[[ $(grep -c '^pki: wrote ' <<<"$out") -eq ${#FILES[@]} ]] || fail "--force output: $out"
after=$(digests)
for f in "${FILES[@]}"; do
  old=$(grep " $f\$" <<<"$before" | cut -d' ' -f1)
  new=$(grep " $f\$" <<<"$after" | cut -d' ' -f1)
  [[ $old != "$new" ]] || fail "--force kept $f"
done
openssl x509 -in "$DIR/m5s.crt" -noout -ext subjectAltName | grep -qxF \
  '    DNS:m5s.example.org, IP Address:127.0.0.1' || fail "--fqdn not in the m5s SAN"
openssl verify -CAfile "$DIR/ca.crt" "$DIR/m5s.crt" >/dev/null || fail "m5s after --force"

# A partial PKI is neither kept nor overwritten without --force.
rm "$DIR/gw1.key"
before=$(cd "$DIR" && sha256sum ca.key)
rc=0
pki --dir "$DIR" >/dev/null 2>"$M5_TMP/err" || rc=$?
[[ $rc -eq 1 ]] || fail "partial PKI: exit $rc, want 1"
{ grep -q 'gw1.key' "$M5_TMP/err" && grep -q -- '--force' "$M5_TMP/err"; } ||
  fail "partial PKI message: $(cat "$M5_TMP/err")"
[[ "$(cd "$DIR" && sha256sum ca.key)" == "$before" ]] || fail "partial PKI was modified"

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
