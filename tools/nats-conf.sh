# shellcheck shell=bash
# nats_conf: the nats-server config of one JetStream node on loopback, for `make run-cluster`
# (tools/run-cluster.sh) and the JetStream benchmark (bench/js.sh), sourced by both.
#
# nats_conf FILE NAME CLIENT_PORT MON_PORT STORE_DIR [CLUSTER ROUTE_PORT ALL_ROUTE_PORTS...]:
# writes FILE for server NAME (client and monitoring ports on 127.0.0.1, JetStream in
# STORE_DIR) and checks it with nats-server -t (NATS_SERVER, default nats-server); with
# CLUSTER, it joins the cluster of that name on ROUTE_PORT with routes to every port of
# ALL_ROUTE_PORTS (its own among them: a server ignores its own route). 0, or 1 with
# nats-server's complaint on stderr.
nats_conf() {
  local file=$1 name=$2 port=$3 mon=$4 store=$5 cluster=${6:-} route=${7:-} out r
  shift 7 2>/dev/null || shift $#
  {
    echo "# nats-server $name, written by ${RUN_WHAT:-a script of this repository} on every run."
    echo "server_name: $name"
    echo "listen: 127.0.0.1:$port"
    echo "http: 127.0.0.1:$mon"
    echo "jetstream {"
    echo "  store_dir: \"$store\""
    echo "  max_memory_store: 64MB"
    echo "  max_file_store: 1GB"
    echo "}"
    if [[ -n $cluster ]]; then
      echo "cluster {"
      echo "  name: $cluster"
      echo "  listen: 127.0.0.1:$route"
      echo "  routes: ["
      for r in "$@"; do echo "    nats-route://127.0.0.1:$r"; done
      echo "  ]"
      echo "}"
    fi
  } >"$file"
  if ! out=$("${NATS_SERVER:-nats-server}" -t -c "$file" 2>&1); then
    echo "$file is not a valid nats-server config: $out" >&2
    return 1
  fi
}
