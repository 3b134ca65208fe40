// The search page: plain JavaScript, same-origin requests only, nothing loaded from another
// host. Every value from the service is written with textContent (project texts are user
// input), never as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "handwerk.apiKey";
  const KNOWN_TYPES = ["kitchen", "stairs", "wardrobe", "flooring", "windows", "furniture"];
  const TYPE_LABELS = {
    kitchen: "Küche", stairs: "Treppe", wardrobe: "Schrank", flooring: "Boden",
    windows: "Fenster", furniture: "Möbel",
  };
  const MODE_LABELS = { dense: "Bedeutung", keyword: "Stichwörter", hybrid: "Hybrid" };
  const euro = new Intl.NumberFormat("de-DE", { style: "currency", currency: "EUR", maximumFractionDigits: 0 });
  const decimal = (digits) => new Intl.NumberFormat("de-DE", { maximumFractionDigits: digits });
  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(kind, message, details) {
      super(message);
      this.kind = kind; // "key" | "busy" | "down" | "invalid" | "other"
      this.details = details || [];
    }
  }

  // ---- the key: only in this tab's session ----------------------------------------------
  function storedKey() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch (e) { return ""; }
  }
  function storeKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key); else sessionStorage.removeItem(KEY_STORAGE);
    } catch (e) { /* storage disabled: the key lives until the page is left */ }
    $("key-state").hidden = !key;
  }

  let retry = null; // what to run again once a key was given

  function askForKey(reason, again) {
    retry = again || null;
    $("key-reason").textContent = reason;
    $("key-panel").hidden = false;
    $("api-key").value = "";
    $("api-key").focus();
  }

  // ---- requests -----------------------------------------------------------------------
  function retryAfter(response) {
    const seconds = parseInt(response.headers.get("Retry-After") || "", 10);
    return Number.isFinite(seconds) && seconds > 0
      ? `Bitte in ${seconds} Sekunde${seconds === 1 ? "" : "n"} erneut versuchen.`
      : "Bitte gleich erneut versuchen.";
  }

  function fieldName(loc) {
    const names = {
      query: "Beschreibung", description: "Beschreibung", project_type: "Projektart",
      region: "Region", min_price: "Preis von", max_price: "Preis bis", total_area_sqm: "Fläche",
      wood_type: "Holzart", complexity: "Komplexität", mode: "Suchmodus", top_k: "Anzahl Treffer",
    };
    const last = Array.isArray(loc) && loc.length ? String(loc[loc.length - 1]) : "";
    if (last === "body" || last === "") return ""; // the request as a whole: no field to name
    return names[last] || last;
  }

  function errorMessages(data) {
    const detail = data && Array.isArray(data.detail) ? data.detail : [];
    return detail.map((d) => {
      const field = fieldName(d.loc);
      return field ? `${field}: ${d.msg}` : String(d.msg);
    });
  }

  function explain(response, data, hadKey) {
    const status = response.status;
    const details = errorMessages(data);
    const type = data && Array.isArray(data.detail) && data.detail[0] ? data.detail[0].type : "";
    if (status === 401) {
      return new ApiError("key", hadKey
        ? "Der API-Schlüssel wurde abgelehnt (unbekannt oder widerrufen). Bitte einen gültigen Schlüssel eingeben."
        : "Für diese Anfrage ist ein API-Schlüssel nötig. Bitte einen Schlüssel mit der Berechtigung „read“ eingeben.");
    }
    if (status === 403 && type === "cross_site") {
      return new ApiError("other", "Die Anfrage wurde als seitenfremd abgelehnt. Bitte die Seite direkt über die Adresse des Dienstes öffnen.");
    }
    if (status === 403) {
      return new ApiError("key", "Dieser API-Schlüssel hat nicht die nötige Berechtigung („read“). Bitte einen anderen Schlüssel eingeben.");
    }
    if (status === 429) {
      return new ApiError("busy", `Zu viele Anfragen in kurzer Zeit. ${retryAfter(response)}`);
    }
    if (status === 503) {
      return new ApiError("busy", `Der Dienst ist gerade ausgelastet oder nicht bereit. ${retryAfter(response)}`, details);
    }
    if (status === 502 || status === 504) {
      return new ApiError("down", "Der Dienst ist nicht erreichbar. Bitte später erneut versuchen.");
    }
    if (status === 409) {
      return new ApiError("invalid", "Dieser Suchmodus ist noch nicht verfügbar (dem Index fehlen die Stichwörter). Bitte „Bedeutung“ wählen.", details);
    }
    if (status === 422) {
      return new ApiError("invalid", "Die Anfrage wurde nicht angenommen.", details);
    }
    return new ApiError("other", `Der Dienst meldet einen Fehler (Status ${status}).`, details);
  }

  async function call(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const key = storedKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    let response;
    try {
      response = await fetch(path, {
        method, headers, cache: "no-store", credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError("down", "Der Dienst ist nicht erreichbar (keine Verbindung). Bitte Netzwerk prüfen und gleich erneut versuchen.");
    }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (response.ok) return data;
    throw explain(response, data, Boolean(key));
  }

  // ---- messages -----------------------------------------------------------------------
  function showMessage(error) {
    const box = $("message");
    box.replaceChildren();
    box.className = `message ${error.kind}`;
    box.dataset.kind = error.kind;
    const head = document.createElement("strong");
    head.textContent = error.message;
    box.append(head);
    if (error.details.length) {
      const list = document.createElement("ul");
      for (const text of error.details) {
        const item = document.createElement("li");
        item.textContent = text;
        list.append(item);
      }
      box.append(list);
    }
    box.hidden = false;
  }
  function clearMessage() {
    $("message").hidden = true;
    $("message").replaceChildren();
  }

  /** Runs ``action``; a key problem opens the key prompt (and runs it again after). */
  async function attempt(action, onError) {
    clearMessage();
    try {
      await action();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.kind === "key") {
        if (storedKey()) storeKey("");
        askForKey(error.message, action);
        return;
      }
      if (onError) onError(error); else showMessage(error);
    }
  }

  // ---- formatting ---------------------------------------------------------------------
  const typeLabel = (t) => (TYPE_LABELS[t] ? `${TYPE_LABELS[t]}` : t || "–");
  const money = (v) => (typeof v === "number" && Number.isFinite(v) ? euro.format(v) : "–");
  const area = (v) => (typeof v === "number" ? `${decimal(1).format(v)} m²` : "–");
  const perSqm = (price, sqm) => (sqm > 0 ? `${euro.format(price / sqm)}/m²` : "–");
  const moneyPerSqm = (v) => (typeof v === "number" && Number.isFinite(v) ? `${euro.format(v)}/m²` : "–");
  const twoDigits = new Intl.NumberFormat("de-DE", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const score = (v) => (typeof v === "number" ? twoDigits.format(v) : "–");

  function snippet(text, length = 220) {
    const clean = (text || "").replace(/\s+/g, " ").trim();
    return clean.length > length ? `${clean.slice(0, length).replace(/\s+\S*$/, "")} …` : clean;
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function facts(pairs) {
    const list = el("dl", undefined, "facts");
    for (const [term, value, name] of pairs) {
      const row = el("div");
      const dd = el("dd", value);
      if (name) dd.dataset.field = name;
      row.append(el("dt", term), dd);
      list.append(row);
    }
    return list;
  }

  // ---- choices for the filters ------------------------------------------------------------
  function fillTypes(types) {
    for (const id of ["filter-type", "est-type"]) {
      const select = $(id);
      const have = new Set([...select.options].map((o) => o.value));
      for (const t of types) {
        if (have.has(t)) continue;
        const option = el("option", typeLabel(t));
        option.value = t;
        select.append(option);
        have.add(t);
      }
    }
  }
  function fillList(id, values) {
    const list = $(id);
    list.replaceChildren(...[...values].sort((a, b) => a.localeCompare(b, "de")).map((v) => {
      const option = el("option");
      option.value = v;
      return option;
    }));
  }

  /** Types, regions and woods seen in the first page of projects (the filters stay free text
   *  for regions and woods; types are a list: the known ones plus any found). */
  async function loadChoices() {
    fillTypes(KNOWN_TYPES);
    const page = await call("GET", "/api/v1/projects?limit=500");
    const types = new Set(), regions = new Set(), woods = new Set();
    for (const p of page.items || []) {
      if (p.project_type) types.add(p.project_type);
      if (p.region) regions.add(p.region);
      if (p.wood_type) woods.add(p.wood_type);
    }
    fillTypes([...types].sort());
    fillList("regions", regions);
    fillList("woods", woods);
  }

  // ---- search -------------------------------------------------------------------------
  function numberOf(id) {
    const input = $(id);
    return input.value === "" ? null : input.valueAsNumber;
  }

  function searchBody() {
    const query = $("query").value.trim();
    const filters = {};
    const type = $("filter-type").value;
    const region = $("filter-region").value.trim();
    const min = numberOf("filter-min-price"), max = numberOf("filter-max-price");
    if (type) filters.project_type = type;
    if (region) filters.region = region;
    if (min !== null) filters.min_price = min;
    if (max !== null) filters.max_price = max;
    const body = { query, top_k: parseInt($("top-k").value, 10) };
    if (Object.keys(filters).length) body.filters = filters;
    if ($("mode").value) body.mode = $("mode").value;
    return body;
  }

  function renderResults(out) {
    const list = $("results");
    list.replaceChildren();
    for (const r of out.results) {
      const item = el("li", undefined, "result");
      item.dataset.id = r.id;
      item.dataset.type = r.project_type;
      item.dataset.price = String(r.final_price);
      item.append(el("h3", r.name), el("p", snippet(r.description), "snippet"), facts([
        ["Projektart", typeLabel(r.project_type), "type"],
        ["Holz", r.wood_type || "–", "wood"],
        ["Region", r.region, "region"],
        ["Fläche", area(r.total_area_sqm), "area"],
        ["Preis", money(r.final_price), "price"],
        ["Preis pro m²", perSqm(r.final_price, r.total_area_sqm), "price-per-sqm"],
        ["Ähnlichkeit", score(r.similarity), "similarity"],
      ]));
      list.append(item);
    }
    const mode = MODE_LABELS[out.mode] || out.mode;
    $("results-summary").textContent = out.results.length
      ? `${out.results.length} Treffer · Suchmodus: ${mode} · ${decimal(0).format(out.search_time_ms)} ms`
      : `Keine passenden Projekte gefunden (Suchmodus: ${mode}). Filter lockern oder anders beschreiben.`;
    $("results-summary").dataset.mode = out.mode;
  }

  async function search() {
    const body = searchBody();
    if (!body.query) {
      showMessage(new ApiError("invalid", "Bitte eine Beschreibung eingeben."));
      $("query").focus();
      return;
    }
    if (body.filters && body.filters.min_price != null && body.filters.max_price != null
        && body.filters.min_price > body.filters.max_price) {
      showMessage(new ApiError("invalid", "„Preis von“ ist größer als „Preis bis“."));
      $("filter-min-price").focus();
      return;
    }
    const button = $("search-button");
    button.disabled = true;
    $("results").setAttribute("aria-busy", "true");
    $("results-summary").textContent = "Suche läuft …";
    try {
      await attempt(async () => renderResults(await call("POST", "/api/v1/similarity/find-similar", body)),
        (error) => { $("results-summary").textContent = "Keine Ergebnisse (Fehler, siehe Meldung oben)."; showMessage(error); });
    } finally {
      button.disabled = false;
      $("results").setAttribute("aria-busy", "false");
    }
  }

  // ---- estimate -----------------------------------------------------------------------
  function adjustment(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "number") return `×${decimal(3).format(value)}`;
    if (typeof value === "object" && typeof value.factor === "number") {
      if (value.factor === 1) return "keine";
      const parts = [];
      if (typeof value.complexity === "number" && value.complexity !== 1) parts.push(`Komplexität ×${decimal(3).format(value.complexity)}`);
      if (typeof value.wood === "number" && value.wood !== 1) parts.push(`Holz ×${decimal(3).format(value.wood)}`);
      return `×${decimal(3).format(value.factor)}${parts.length ? ` (${parts.join(", ")})` : ""}`;
    }
    if (typeof value === "object") {
      return Object.entries(value).map(([k, v]) => `${k}: ${v}`).join(", ") || "–";
    }
    return String(value);
  }

  function coverageText(coverage) {
    if (typeof coverage !== "number") return "";
    const percent = coverage <= 1 ? coverage * 100 : coverage;
    return `${decimal(0).format(percent)} %`;
  }

  function renderEstimate(out) {
    const box = $("estimate-result");
    box.replaceChildren();
    const price = el("p", `Geschätzter Preis: ${money(out.estimated_price)}`, "estimate-price");
    price.id = "estimate-price";
    const interval = out.interval || {};
    box.append(price, facts([
      [`Spanne (${coverageText(interval.coverage)} der Preise)`, `${money(interval.low)} – ${money(interval.high)}`, "interval"],
      ["Preis pro m²", moneyPerSqm(out.price_per_sqm), "price-per-sqm"],
      ["Methode", out.method || "–", "method"],
      ["Suchmodus", MODE_LABELS[out.mode] || out.mode || "–", "mode"],
      ["Rechenzeit", `${decimal(1).format(out.estimate_time_ms || 0)} ms`, "time"],
    ]));
    if (out.weak) {
      box.append(el("p", "Schwache Schätzung: die Vergleichsprojekte sind dem Auftrag wenig ähnlich.", "warning"));
    }
    if (out.note) box.append(el("p", out.note, "note"));
    const wrap = el("div", undefined, "table-wrap");
    wrap.tabIndex = 0; // scrollable by keyboard on a phone
    const table = el("table");
    table.id = "neighbours";
    table.append(el("caption", `Verwendete Vergleichsprojekte (${(out.neighbours || []).length})`));
    const head = el("tr");
    const columns = [["Name"], ["Art"], ["Holz"], ["Region"], ["Fläche", "num"], ["Kompl.", "num"],
      ["Preis", "num"], ["Preis/m²", "num"], ["Ähnlichkeit", "num"], ["Gewicht", "num"], ["Anpassung"]];
    for (const [name, cls] of columns) {
      const th = el("th", name, cls);
      th.scope = "col";
      head.append(th);
    }
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    for (const n of out.neighbours || []) {
      const row = el("tr");
      row.dataset.id = n.id;
      const cells = [[n.name], [typeLabel(n.project_type)], [n.wood_type || "–"], [n.region || "–"],
        [area(n.total_area_sqm), "num"], [n.complexity ?? "–", "num"], [money(n.final_price), "num"],
        [moneyPerSqm(n.price_per_sqm), "num"], [score(n.similarity), "num"], [score(n.weight), "num"],
        [adjustment(n.adjustment)]];
      for (const [text, cls] of cells) row.append(el("td", String(text), cls));
      tbody.append(row);
    }
    table.append(thead, tbody);
    wrap.append(table);
    box.append(wrap);
  }

  function estimateBody() {
    const body = {
      description: $("query").value.trim(),
      project_type: $("est-type").value,
      total_area_sqm: numberOf("est-area"),
    };
    const wood = $("est-wood").value.trim(), region = $("est-region").value.trim();
    const complexity = $("est-complexity").value;
    if (wood) body.wood_type = wood;
    if (region) body.region = region;
    if (complexity) body.complexity = parseInt(complexity, 10);
    if ($("mode").value) body.mode = $("mode").value;
    return body;
  }

  async function estimate() {
    const body = estimateBody();
    const missing = [];
    if (!body.description) missing.push(["query", "eine Beschreibung im Suchfeld"]);
    if (body.total_area_sqm === null || !(body.total_area_sqm > 0)) missing.push(["est-area", "die Fläche in m²"]);
    if (!body.project_type) missing.push(["est-type", "die Projektart"]);
    if (missing.length) {
      showMessage(new ApiError("invalid", `Für die Schätzung fehlt: ${missing.map((m) => m[1]).join(", ")}.`));
      $(missing[0][0]).focus();
      return;
    }
    const button = $("estimate-button");
    button.disabled = true;
    $("estimate-result").replaceChildren(el("p", "Schätzung läuft …"));
    try {
      await attempt(async () => renderEstimate(await call("POST", "/api/v1/estimate", body)), (error) => {
        const box = $("estimate-result");
        box.replaceChildren();
        if (error.kind === "invalid") {
          // 422: too few comparable projects (or an invalid field): the reason, never a number
          const note = el("p", "Keine Schätzung möglich.", "warning");
          note.id = "estimate-refused";
          box.append(note);
          for (const text of error.details) box.append(el("p", text));
        } else {
          showMessage(error);
        }
      });
    } finally {
      button.disabled = false;
    }
  }

  // ---- wiring -------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    storeKey(storedKey());
    $("search-form").addEventListener("submit", (event) => { event.preventDefault(); search(); });
    $("estimate-form").addEventListener("submit", (event) => { event.preventDefault(); estimate(); });
    $("filter-type").addEventListener("change", () => {
      if (!$("est-type").value) $("est-type").value = $("filter-type").value;
    });
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      if (!key) { $("api-key").focus(); return; }
      storeKey(key);
      $("api-key").value = "";
      $("key-panel").hidden = true;
      const again = retry;
      retry = null;
      if (again) attempt(again); else $("query").focus();
    });
    $("key-forget").addEventListener("click", () => {
      storeKey("");
      $("query").focus();
    });
    attempt(loadChoices, () => { /* the lists only help; searches report their own errors */ });
    $("query").focus();
  });
})();
