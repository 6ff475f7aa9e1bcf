// Hash routes: #/messages?status=FAILED, #/messages/<id>, #/targets. The hash never reaches the
// server, so a message id or a filter in it is never in a request URL or an access log.

export function currentRoute() {
  const hash = location.hash.replace(/^#/, "");
  const [path, search = ""] = hash.split("?", 2);
  let parts;
  try {
    parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    parts = [];
  }
  return { parts, params: new URLSearchParams(search) };
}

export function href(parts, params = {}) {
  const search = new URLSearchParams(Object.entries(params).filter(([, value]) => value));
  const query = search.toString();
  return `#/${parts.map(encodeURIComponent).join("/")}${query ? `?${query}` : ""}`;
}
