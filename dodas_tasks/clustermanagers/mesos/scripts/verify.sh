# Asks this master's Mesos and Marathon for their state, with the credentials kept on the node (curl -K),
# and prints them between markers for the worker to parse. Needs: DODAS_VERIFY_PATHS ("mesos:/path ...").
S="$DODAS_MESOS_STATE"
for _item in $DODAS_VERIFY_PATHS; do
    _service=${_item%%:*}
    _path=${_item#*:}
    [ -s "$S/$_service/url" ] || fail "no $_service configured on this node ($S/$_service/url is missing)"
    _url="$(cat "$S/$_service/url")$_path"
    echo "=== $_service $_path"
    if ! curl -sS --fail-with-body --max-time 20 -K "$S/$_service/curlrc" "$_url"; then
        echo
        echo "=== error $_service $_path"
    fi
    echo
done
echo "=== end"
