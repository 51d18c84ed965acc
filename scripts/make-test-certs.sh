#!/usr/bin/env bash
# Makes a throwaway PKI with openssl for TLS tests, interop checks and benchmarks:
#   ca.pem             the CA (ca-key.pem its key)
#   server.pem         client-facing server certificate (localhost, 127.0.0.1)
#   peer.pem           peer certificate, server and client use (127.0.0.1, localhost), CN=peer
#   client.pem         client certificate, CN=root (etcd takes the CN as the user name)
#   revoked.pem        client certificate listed in crl.pem
#   expired.pem        a certificate that expired in 2020
#   faraway.pem        peer-usable certificate naming only 10.9.9.9 (fails etcd's peer address check)
#   other-ca.pem       a second CA; other-client.pem and other-server.pem are signed by it
# Every certificate has its key next to it as NAME-key.pem. Usage: make-test-certs.sh DIR
set -euo pipefail
dir=${1:?usage: make-test-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

cat > ca.cnf <<'CNF'
[ca]
default_ca = test_ca
[test_ca]
dir = .
database = index.txt
new_certs_dir = .
serial = serial.txt
crlnumber = crlnumber.txt
default_md = sha256
default_crl_days = 3650
policy = any
unique_subject = no
copy_extensions = copy
[any]
commonName = supplied
CNF
: > index.txt
echo 1000 > serial.txt
echo 1000 > crlnumber.txt

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

make_ca() { # name subject
    key "$1-key.pem"
    openssl req -x509 -new -key "$1-key.pem" -days 3650 -subj "/CN=$2" -out "$1.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# leaf NAME CN SAN EKU [CA] [extra openssl ca args...]
leaf() {
    local name=$1 cn=$2 san=$3 eku=$4 ca=${5:-ca}
    shift 5 || shift $#
    key "$name-key.pem"
    openssl req -new -key "$name-key.pem" -subj "/CN=$cn" -out "$name.csr" \
        -addext "subjectAltName=$san" -addext "extendedKeyUsage=$eku" \
        -addext "keyUsage=critical,digitalSignature,keyEncipherment" 2>/dev/null
    openssl ca -batch -config ca.cnf -cert "$ca.pem" -keyfile "$ca-key.pem" -in "$name.csr" -out "$name.pem" \
        -notext -days 3650 "$@" 2>/dev/null
    rm -f "$name.csr"
}

make_ca ca "swift-etcd test CA"
make_ca other-ca "another CA"
leaf server server "DNS:localhost,IP:127.0.0.1" serverAuth,clientAuth ca
leaf peer peer "DNS:localhost,IP:127.0.0.1" serverAuth,clientAuth ca
leaf client root "DNS:localhost" clientAuth ca
leaf revoked revoked "DNS:localhost" clientAuth ca
leaf expired expired "DNS:localhost,IP:127.0.0.1" serverAuth,clientAuth ca -startdate 20200101000000Z -enddate 20200102000000Z
leaf faraway faraway "IP:10.9.9.9" serverAuth,clientAuth ca
leaf other-client root "DNS:localhost" clientAuth other-ca
leaf other-server other-server "DNS:localhost,IP:127.0.0.1" serverAuth,clientAuth other-ca
openssl ca -config ca.cnf -cert ca.pem -keyfile ca-key.pem -revoke revoked.pem 2>/dev/null
openssl ca -config ca.cnf -cert ca.pem -keyfile ca-key.pem -gencrl -out crl.pem 2>/dev/null
rm -f ./*.old ./*.attr ca.cnf index.txt* serial.txt* crlnumber.txt* ./[0-9A-F][0-9A-F]*.pem
echo "certificates in $dir"
