# A Mesos agent: Docker and Mesos containerizers, registered with the masters through ZooKeeper.
# Needs: NODE_IP, ZK_CONNECT, MESOS_AGENT_PORT, MESOS_ATTRIBUTES, MESOS_CONTAINERIZERS, MESOS_IMAGE,
# MESOS_AGENT_COMMAND, MESOS_AGENT_WORK_DIR, DOCKER_SOCKET.
lock_node
S="$DODAS_MESOS_STATE"
mkdir -p "$S/agent"
{
    env_line MESOS_MASTER "zk://$ZK_CONNECT/mesos"
    env_line MESOS_IP "$NODE_IP"
    env_line MESOS_HOSTNAME "$NODE_IP"
    env_line MESOS_PORT "$MESOS_AGENT_PORT"
    env_line MESOS_CONTAINERIZERS "$MESOS_CONTAINERIZERS"
    env_line MESOS_EXECUTOR_REGISTRATION_TIMEOUT 10mins
    env_line MESOS_WORK_DIR "$MESOS_AGENT_WORK_DIR"
    env_line MESOS_SYSTEMD_ENABLE_SUPPORT false
    env_line MESOS_ATTRIBUTES "$MESOS_ATTRIBUTES"
    if [ "${TOSCA_PROPERTY_ENABLE_GPU_SUPPORT:-false}" = true ]; then
        env_line MESOS_ISOLATION "docker/runtime,filesystem/linux,cgroups/devices,gpu/nvidia"
    fi
} | write_file "$S/agent/env" >/dev/null
set -- --privileged --pid host -v "$DOCKER_SOCKET:/var/run/docker.sock" -v /sys/fs/cgroup:/sys/fs/cgroup \
    -v "$MESOS_AGENT_WORK_DIR:$MESOS_AGENT_WORK_DIR" --env-file "$S/agent/env" "$MESOS_IMAGE" "$MESOS_AGENT_COMMAND"
ensure_container dodas-mesos-agent "$(digest "$S/agent/env" "$@")" "$@"
wait_running dodas-mesos-agent
echo "mesos agent ready on $NODE_IP (attributes $MESOS_ATTRIBUTES)"
