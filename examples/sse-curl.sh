#!/bin/sh
# Run with: `make run` in one terminal, then `sh examples/sse-curl.sh` in another.
#
# Streams the feed plugin's `news` channel over HTTP/2 (h2c prior knowledge),
# publishes three posts through the publish API, then reconnects with
# Last-Event-ID to show that a client that went away gets exactly what it missed.
set -eu
BASE=${PORTICO_URL:-http://127.0.0.1:8080}
SECRET=${PORTICO_JWT_SECRET:-portico-dev-secret-change-me}
KEY=${PORTICO_API_KEY:-portico-dev-publish-key}
TOKEN=$(target/debug/portico token mint --sub alice --secret "$SECRET")
OUT=$(mktemp)

# 1. A reader: Authorization header (curl can send one; browsers use ?access_token=).
curl -sSN --http2-prior-knowledge -H "Authorization: Bearer $TOKEN" \
  "$BASE/sse/feed?channel=news&channel=user:alice" > "$OUT" &
READER=$!
sleep 1

# 2. A backend publishes three posts.
for i in 1 2 3; do
  curl -sS -X POST "$BASE/api/v1/publish" \
    -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
    -d "{\"plugin\":\"feed\",\"channel\":\"news\",\"event\":\"post\",\"data\":{\"title\":\"headline $i\"}}"
  echo
done
sleep 1
kill "$READER"
echo "--- the reader got:"
cat "$OUT"

# 3. Resume after the first event: headlines 2 and 3 come back, then live events.
FIRST=$(sed -n 's/^id: //p' "$OUT" | head -n 1)
echo "--- resuming after $FIRST:"
curl -sSN --max-time 2 -H "Last-Event-ID: $FIRST" \
  "$BASE/sse/feed?channel=news&channel=user:alice&access_token=$TOKEN" || true
rm -f "$OUT"
