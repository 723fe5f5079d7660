# Stops and removes this node's Mesos containers (CONTAINERS: space-separated names).
for _c in $CONTAINERS; do
    if [ "$(container_state "$_c")" != absent ]; then
        rt rm -f "$_c" >/dev/null
        echo "$_c removed"
    else
        echo "$_c not present"
    fi
done
