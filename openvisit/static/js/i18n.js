// The page's configuration and translated strings, both rendered by the server as JSON.

function readJson(id) {
  const el = document.getElementById(id);
  return el ? JSON.parse(el.textContent) : {};
}

export const config = readJson("ov-config");
const strings = readJson("ov-strings");

/** The translated string `key` with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  let text = strings[key] ?? key;
  for (const [name, value] of Object.entries(vars)) {
    text = text.replaceAll(`{${name}}`, String(value));
  }
  return text;
}

/** "m:ss" (or "h:mm:ss") for a number of seconds. */
export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** How a participant is named to the viewer: by role, never by name. */
export function labelOf(peer, { viewerIsStaff = config.role === "provider" } = {}) {
  if (peer.role === "provider") {
    if (viewerIsStaff) return peer.n > 1 ? t("role.provider.n", { n: peer.n }) : t("role.provider");
    // Patients see "Your clinician" unless the organisation shows a configured label.
    if (config.labelMode === "display" && peer.label) return peer.label;
    return t("role.provider.patient_view");
  }
  const base = `role.${peer.role}`;
  return peer.n > 1 ? t(`${base}.n`, { n: peer.n }) : t(base);
}
