#!/bin/sh
# A development CA and the server certificates of the compose stack: Kafka's SASL_SSL
# listener (PKCS12 keystore in the layout the apache/kafka image reads) and the registry's
# HTTPS. For production, use certificates from the organization's own CA instead.
#   make-dev-certs.sh OUT_DIR EXTERNAL_HOST
# Idempotent: an existing CA is reused, so connectors that trust it keep working.
set -eu
out=${1:?usage: make-dev-certs.sh OUT_DIR EXTERNAL_HOST}
host=${2:?usage: make-dev-certs.sh OUT_DIR EXTERNAL_HOST}
umask 027
mkdir -p "$out"
chmod 0750 "$out"
cd "$out"

if [ ! -f ca.key ]; then
  openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=Vigie dev CA" \
    -keyout ca.key -out ca.crt 2>/dev/null
  chmod 0600 ca.key
fi
chmod 0640 ca.crt

server_cert() {
  name=$1
  sans=$2
  openssl req -newkey rsa:3072 -nodes -subj "/CN=$name" -keyout "$name.key" -out "$name.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$sans" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 397 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
  chmod 0640 "$name.key" "$name.crt"
}

server_cert kafka "DNS:kafka,DNS:localhost,DNS:$host"
server_cert registry "DNS:schema-registry,DNS:localhost,DNS:$host"

# Kafka reads a keystore and two files holding its password (apache/kafka's image layout).
keystore_password=$(openssl rand -hex 24)
openssl pkcs12 -export -in kafka.crt -inkey kafka.key -certfile ca.crt -name kafka \
  -passout "pass:$keystore_password" -out kafka.keystore.p12
printf '%s' "$keystore_password" > kafka_keystore_creds
printf '%s' "$keystore_password" > kafka_key_creds
chmod 0640 kafka.keystore.p12 kafka_keystore_creds kafka_key_creds
echo "dev CA and certificates in $out (CA: $out/ca.crt, give it to the connectors)"
