// sendo console: a client of this server's Kubernetes API, with the user's own token.
// No framework, no build step: views are <section>s of index.html, chosen by the URL's hash.
const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'sendo-console-token';
const MANAGER = 'sendo-console';
const METRICS_EVERY_MS = 5000;
const LOG_KEEP_CHARS = 500000;

// ------------------------------------------------------------------ the API
class ApiError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

async function call(path, options = {}) {
  const headers = { Accept: 'application/json', Authorization: `Bearer ${token()}`, ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers, cache: 'no-store' });
  if (response.ok) return response;
  let message = response.statusText;
  try { message = (await response.json()).message || message; } catch { /* not a Status */ }
  if (response.status === 401) logout('The server refused the token (401 Unauthorized): log in again.');
  throw new ApiError(response.status, `${response.status}: ${message}`);
}

const api = async (path, options) => (await call(path, options)).json();

async function* chunks(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    yield value;
  }
}

async function* lines(response) {
  let buf = '';
  for await (const chunk of chunks(response)) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); });
});

// List, then watch from the list's resourceVersion; list again when the watch says the
// version is gone (an ERROR event), watch again when the server ends a watch.
async function listWatch(path, signal, onList, onEvent, onState = () => {}) {
  while (!signal.aborted) {
    try {
      const list = await api(path, { signal });
      onList(list.items);
      let rv = list.metadata.resourceVersion;
      while (!signal.aborted && rv) {
        onState('live');
        const q = new URLSearchParams({ watch: '1', resourceVersion: rv, allowWatchBookmarks: 'true' });
        const response = await call(`${path}?${q}`, { signal });
        for await (const line of lines(response)) {
          if (!line.trim()) continue;
          const event = JSON.parse(line);
          if (event.type === 'ERROR') { rv = null; break; }
          rv = event.object.metadata.resourceVersion || rv;
          if (event.type !== 'BOOKMARK') onEvent(event.type, event.object);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e.code === 403) { onState('forbidden'); fail(e); return; }  // this token may not see these
      onState(`reconnecting (${e.message})`);
      await sleep(1000, signal);
    }
  }
}

// ------------------------------------------------------------------ formatting
const SUFFIX = { n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };

function quantity(text) {
  if (text === undefined || text === null) return NaN;
  const m = /^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$/.exec(String(text));
  return m ? Number(m[1]) * (m[2] ? SUFFIX[m[2]] ?? NaN : 1) : NaN;
}

const cores = (v) => (Number.isNaN(v) ? '-' : `${Math.round(v * 1000)}m`);
const mib = (v) => (Number.isNaN(v) ? '-' : `${Math.round(v / 2 ** 20)}Mi`);

function age(stamp) {
  if (!stamp) return '-';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(stamp)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return s < 172800 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86400)}d`;
}

function cell(tr, i, text, cls) {
  while (tr.cells.length <= i) tr.insertCell();
  const td = tr.cells[i];
  if (td.textContent !== String(text)) td.textContent = text;
  if (cls !== undefined) td.className = cls;
  return td;
}

function button(label, title, action) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.setAttribute('aria-label', title);
  b.addEventListener('click', action);
  return b;
}

// A table body whose rows are keyed: an update touches one row; rows stay sorted by key.
class Rows {
  constructor(tbody, fill, key = (o) => o.metadata.name) {
    Object.assign(this, { tbody, fill, key, rows: new Map() });
  }

  reset(items) {
    this.rows.clear();
    const frag = document.createDocumentFragment();
    for (const o of [...items].sort((a, b) => cmp(this.key(a), this.key(b)))) frag.append(this.make(o));
    this.tbody.replaceChildren(frag);
  }

  make(o) {
    const tr = document.createElement('tr');
    tr.dataset.key = this.key(o);
    this.rows.set(tr.dataset.key, tr);
    this.fill(tr, o, true);
    return tr;
  }

  upsert(o) {
    const tr = this.rows.get(this.key(o));
    if (tr) { this.fill(tr, o, false); return; }
    const row = this.make(o);
    const after = [...this.tbody.rows].find((r) => cmp(r.dataset.key, row.dataset.key) > 0);
    this.tbody.insertBefore(row, after || null);
  }

  remove(o) {
    const k = this.key(o);
    this.rows.get(k)?.remove();
    this.rows.delete(k);
  }

  apply(type, o) { if (type === 'DELETED') this.remove(o); else this.upsert(o); }
}

const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

// ------------------------------------------------------------------ state and views
const state = { ns: 'default', view: null, stop: new AbortController(), pods: new Map(), logTarget: null };
const nsPath = (prefix, plural) => `${prefix}/namespaces/${encodeURIComponent(state.ns)}/${plural}`;

function status(text) { $('status').textContent = text || ''; }

function fail(e) {
  if (e.name === 'AbortError') return;
  status(e.message);
}

const VIEWS = { workloads: showWorkloads, pods: showPods, logs: showLogs, events: showEvents,
  nodes: showNodes, hpa: showHPA, yaml: showYAML };

function go(view) {
  if (location.hash !== `#${view}`) location.hash = view;
  else route();
}

function route() {
  if (!token()) return;
  const view = location.hash.slice(1) in VIEWS ? location.hash.slice(1) : 'workloads';
  state.stop.abort();
  state.stop = new AbortController();
  state.view = view;
  status('');
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== `view-${view}`;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.hash === `#${view}`) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  VIEWS[view](state.stop.signal).catch(fail);
}

function focusHeading(view) { $(`h-${view}`).focus({ preventScroll: true }); }

// ------------------------------------------------------------------ workloads
const WORKLOADS = [
  { kind: 'Deployment', plural: 'deployments', scalable: true },
  { kind: 'StatefulSet', plural: 'statefulsets', scalable: true },
  { kind: 'DaemonSet', plural: 'daemonsets', scalable: false },
];

function counts(kind, o) {
  const s = o.status || {};
  if (kind === 'DaemonSet') {
    return [s.desiredNumberScheduled ?? 0, s.numberReady ?? 0, s.updatedNumberScheduled ?? 0, s.numberAvailable ?? 0];
  }
  const desired = o.spec.replicas ?? 1;
  return [desired, s.readyReplicas ?? 0, s.updatedReplicas ?? (kind === 'StatefulSet' ? s.currentReplicas ?? 0 : 0),
    s.availableReplicas ?? 0];
}

function rollout(kind, o) {
  const s = o.status || {};
  if ((s.observedGeneration ?? 0) < (o.metadata.generation ?? 0)) return ['Progressing: waiting for the controller', ''];
  const stuck = (s.conditions || []).find((c) => c.type === 'Progressing' && c.status === 'False');
  if (stuck) return [`Failed: ${stuck.reason}`, 'bad'];
  const [desired, ready, updated, available] = counts(kind, o);
  if (kind === 'StatefulSet' && s.updateRevision && s.currentRevision !== s.updateRevision) {
    return [`Progressing: ${updated} of ${desired} updated`, ''];
  }
  if (updated < desired) return [`Progressing: ${updated} of ${desired} updated`, ''];
  if (kind === 'Deployment' && (s.replicas ?? 0) > updated) return ['Progressing: old replicas terminating', ''];
  if (Math.min(ready, available) < desired) return [`Progressing: ${Math.min(ready, available)} of ${desired} available`, ''];
  return ['Complete', 'good'];
}

function fillWorkload(tr, { w, o }, isNew) {
  const name = o.metadata.name;
  const [desired, ready, updated, available] = counts(w.kind, o);
  const [text, cls] = rollout(w.kind, o);
  cell(tr, 0, w.kind);
  cell(tr, 1, name);
  cell(tr, 2, desired, 'num');
  cell(tr, 3, ready, 'num');
  cell(tr, 4, updated, 'num');
  cell(tr, 5, available, 'num');
  cell(tr, 6, text, cls);
  if (isNew) {
    const form = document.createElement('form');
    if (w.scalable) {
      const input = document.createElement('input');
      Object.assign(input, { type: 'number', min: 0, required: true, value: desired });
      input.setAttribute('aria-label', `Replicas of ${w.kind} ${name}`);
      const b = document.createElement('button');
      b.textContent = 'Scale';
      b.setAttribute('aria-label', `Scale ${w.kind} ${name}`);
      form.append(input, ' ', b);
      form.addEventListener('submit', (e) => { e.preventDefault(); scale(w, name, Number(input.value)); });
    }
    cell(tr, 7, '').append(form);
    cell(tr, 8, '').append(button('YAML', `YAML of ${w.kind} ${name}`,
      () => openYAML(`${nsPath('/apis/apps/v1', w.plural)}/${name}`)));
  } else {
    const input = tr.cells[7].querySelector('input');
    if (input && document.activeElement !== input) input.value = desired;
  }
}

async function scale(w, name, replicas) {
  try {
    await api(`${nsPath('/apis/apps/v1', w.plural)}/${name}/scale?fieldManager=${MANAGER}`, {
      method: 'PATCH', headers: { 'Content-Type': 'application/merge-patch+json' },
      body: JSON.stringify({ spec: { replicas } }),
    });
    status(`${w.kind} ${name} scaled to ${replicas}`);
  } catch (e) { fail(e); }
}

async function showWorkloads(signal) {
  focusHeading('workloads');
  const rows = new Rows($('workloads-body'), fillWorkload, ({ w, o }) => `${w.kind}/${o.metadata.name}`);
  rows.reset([]);
  await Promise.all(WORKLOADS.map((w) => listWatch(nsPath('/apis/apps/v1', w.plural), signal, (items) => {
    for (const [k, tr] of rows.rows) if (k.startsWith(`${w.kind}/`)) { tr.remove(); rows.rows.delete(k); }
    for (const o of items) rows.upsert({ w, o });
  }, (type, o) => rows.apply(type, { w, o }))));
}

// ------------------------------------------------------------------ pods
function podStatus(p) {
  if (p.metadata.deletionTimestamp) return 'Terminating';
  for (const c of p.status?.containerStatuses || []) {
    const why = c.state?.waiting?.reason || c.state?.terminated?.reason;
    if (why && why !== 'Completed') return why;
  }
  return p.status?.reason || p.status?.phase || 'Unknown';
}

function fillPod(tr, p, isNew) {
  const name = p.metadata.name;
  const cs = p.status?.containerStatuses || [];
  const st = podStatus(p);
  cell(tr, 0, name);
  cell(tr, 1, st, ['Running', 'Succeeded'].includes(st) ? 'good' : st === 'Pending' ? '' : 'bad');
  cell(tr, 2, `${cs.filter((c) => c.ready).length}/${(p.spec.containers || []).length}`, 'num');
  cell(tr, 3, cs.reduce((n, c) => n + (c.restartCount || 0), 0), 'num');
  cell(tr, 4, p.spec.nodeName || '-');
  cell(tr, 5, p.status?.podIP || '-');
  const usage = state.usage?.get(name);
  cell(tr, 6, usage ? cores(usage.cpu) : '-', 'num');
  cell(tr, 7, usage ? mib(usage.memory) : '-', 'num');
  if (isNew) {
    cell(tr, 8, '').append(
      button('Logs', `Logs of pod ${name}`, () => openLogs(name)), ' ',
      button('YAML', `YAML of pod ${name}`, () => openYAML(`${nsPath('/api/v1', 'pods')}/${name}`)));
  }
}

async function podUsage(rows, signal) {
  while (!signal.aborted) {
    try {
      const list = await api(nsPath('/apis/metrics.k8s.io/v1beta1', 'pods'), { signal });
      state.usage = new Map(list.items.map((m) => [m.metadata.name, m.containers.reduce(
        (u, c) => ({ cpu: u.cpu + quantity(c.usage.cpu), memory: u.memory + quantity(c.usage.memory) }),
        { cpu: 0, memory: 0 })]));
      for (const [name, tr] of rows.rows) {
        const u = state.usage.get(name);
        cell(tr, 6, u ? cores(u.cpu) : '-', 'num');
        cell(tr, 7, u ? mib(u.memory) : '-', 'num');
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e.code !== 404 && e.code !== 403) fail(e);
    }
    await sleep(METRICS_EVERY_MS, signal);
  }
}

async function showPods(signal) {
  focusHeading('pods');
  const rows = new Rows($('pods-body'), fillPod);
  rows.reset([]);
  let first = true;
  const onList = (items) => {
    state.pods = new Map(items.map((p) => [p.metadata.name, p]));
    rows.reset(items);
    if (first) { performance.mark('pods-rendered'); first = false; }
  };
  const onEvent = (type, p) => {
    if (type === 'DELETED') state.pods.delete(p.metadata.name); else state.pods.set(p.metadata.name, p);
    rows.apply(type, p);
  };
  await Promise.all([
    listWatch(nsPath('/api/v1', 'pods'), signal, onList, onEvent, (s) => { $('pods-live').textContent = s; }),
    podUsage(rows, signal),
  ]);
  $('pods-live').textContent = 'stopped';
}

// ------------------------------------------------------------------ logs
function openLogs(pod) {
  state.logTarget = { pod, container: '' };
  go('logs');
}

async function showLogs(signal) {
  focusHeading('logs');
  const names = $('pod-names');
  names.replaceChildren(...[...state.pods.keys()].map((n) => Object.assign(document.createElement('option'), { value: n })));
  const target = state.logTarget;
  state.logTarget = null;
  if (target) {
    $('logs-pod').value = target.pod;
    $('logs-container').value = target.container;
    await streamLogs(signal);
  }
}

async function streamLogs(signal) {
  const out = $('logs-out');
  out.replaceChildren();
  const q = new URLSearchParams({ follow: 'true', tailLines: '1000' });
  if ($('logs-container').value) q.set('container', $('logs-container').value);
  const pod = $('logs-pod').value.trim();
  try {
    const response = await call(`${nsPath('/api/v1', 'pods')}/${encodeURIComponent(pod)}/log?${q}`, { signal });
    status(`streaming the logs of ${pod}`);
    for await (const chunk of chunks(response)) {
      const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
      out.append(chunk);
      if (out.textContent.length > LOG_KEEP_CHARS) out.textContent = out.textContent.slice(-LOG_KEEP_CHARS / 2);
      if (atEnd) out.scrollTop = out.scrollHeight;
    }
    if (!signal.aborted) status(`the log stream of ${pod} ended`);
  } catch (e) { fail(e); }
}

// ------------------------------------------------------------------ events
const when = (e) => e.lastTimestamp || e.eventTime || e.metadata.creationTimestamp || '';

function fillEvent(tr, e) {
  cell(tr, 0, age(when(e)));
  cell(tr, 1, e.type || '', e.type === 'Warning' ? 'bad' : '');
  cell(tr, 2, e.reason || '');
  cell(tr, 3, `${e.involvedObject?.kind || ''}/${e.involvedObject?.name || ''}`);
  cell(tr, 4, e.count ?? e.series?.count ?? 1, 'num');
  cell(tr, 5, e.message || e.note || '');
}

async function showEvents(signal) {
  focusHeading('events');
  const list = await api(nsPath('/api/v1', 'events'), { signal });
  const items = list.items.sort((a, b) => cmp(when(b), when(a))).slice(0, 500);
  $('events-body').replaceChildren(...items.map((e) => {
    const tr = document.createElement('tr');
    fillEvent(tr, e);
    return tr;
  }));
}

// ------------------------------------------------------------------ nodes
async function showNodes(signal) {
  focusHeading('nodes');
  const [nodes, usage] = await Promise.all([
    api('/api/v1/nodes', { signal }),
    api('/apis/metrics.k8s.io/v1beta1/nodes', { signal }).catch(() => ({ items: [] })),
  ]);
  const used = new Map(usage.items.map((m) => [m.metadata.name, m.usage]));
  const rows = new Rows($('nodes-body'), (tr, n) => {
    const name = n.metadata.name;
    const ready = (n.status?.conditions || []).find((c) => c.type === 'Ready');
    const alloc = n.status?.allocatable || {};
    const u = used.get(name) || {};
    cell(tr, 0, name);
    cell(tr, 1, ready?.status === 'True' ? 'Ready' : 'NotReady', ready?.status === 'True' ? 'good' : 'bad');
    cell(tr, 2, (n.status?.addresses || []).map((a) => a.address).join(', '));
    cell(tr, 3, `${cores(quantity(u.cpu))} / ${cores(quantity(alloc.cpu))}`);
    cell(tr, 4, `${mib(quantity(u.memory))} / ${mib(quantity(alloc.memory))}`);
    cell(tr, 5, alloc.pods ?? '-', 'num');
    cell(tr, 6, '').append(button('YAML', `YAML of node ${name}`, () => openYAML(`/api/v1/nodes/${name}`)));
  });
  rows.reset(nodes.items);
}

// ------------------------------------------------------------------ autoscalers
function metricText(spec, current) {
  const name = spec.resource?.name || spec.pods?.metric?.name || spec.object?.metric?.name || spec.external?.metric?.name || spec.type;
  const target = spec.resource?.target || spec.pods?.target || spec.object?.target || spec.external?.target || {};
  const now = (current || []).find((c) => c.type === spec.type && (c.resource?.name ?? null) === (spec.resource?.name ?? null));
  const cur = now?.resource?.current || now?.pods?.current || now?.object?.current || now?.external?.current || {};
  if (target.averageUtilization !== undefined) {
    return `${name} ${cur.averageUtilization ?? '?'}% / ${target.averageUtilization}%`;
  }
  return `${name} ${cur.averageValue ?? cur.value ?? '?'} / ${target.averageValue ?? target.value ?? '?'}`;
}

function fillHPA(tr, h, isNew) {
  const name = h.metadata.name;
  const s = h.status || {};
  cell(tr, 0, name);
  cell(tr, 1, `${h.spec.scaleTargetRef.kind}/${h.spec.scaleTargetRef.name}`);
  cell(tr, 2, (h.spec.metrics || []).map((m) => metricText(m, s.currentMetrics)).join('; ') || '-');
  cell(tr, 3, h.spec.minReplicas ?? 1, 'num');
  cell(tr, 4, h.spec.maxReplicas, 'num');
  cell(tr, 5, s.currentReplicas ?? '-', 'num');
  cell(tr, 6, s.desiredReplicas ?? '-', 'num');
  cell(tr, 7, (s.conditions || []).map((c) => `${c.type}=${c.status} (${c.reason})`).join('; '));
  if (isNew) {
    cell(tr, 8, '').append(button('YAML', `YAML of autoscaler ${name}`,
      () => openYAML(`${nsPath('/apis/autoscaling/v2', 'horizontalpodautoscalers')}/${name}`)));
  }
}

async function showHPA(signal) {
  focusHeading('hpa');
  const rows = new Rows($('hpa-body'), fillHPA);
  await listWatch(nsPath('/apis/autoscaling/v2', 'horizontalpodautoscalers'), signal,
    (items) => rows.reset(items), (type, h) => rows.apply(type, h));
}

// ------------------------------------------------------------------ YAML view and apply
const RESERVED = /^(y|n|yes|no|on|off|true|false|null|~)$/i;

function yamlScalar(v) {
  if (v === null) return 'null';
  if (typeof v !== 'string') return String(v);
  return /^[A-Za-z_/][A-Za-z0-9_./-]*$/.test(v) && !RESERVED.test(v) ? v : JSON.stringify(v);
}

const isBlock = (v) => v !== null && typeof v === 'object' && Object.keys(v).length > 0;
const inline = (v) => (Array.isArray(v) ? '[]' : v !== null && typeof v === 'object' ? '{}' : yamlScalar(v));

// YAML of a JSON value: block style; strings that could read as something else are quoted
// as JSON strings (a JSON string is a YAML double-quoted scalar).
function toYAML(v, pad = '') {
  if (Array.isArray(v)) {
    return v.map((x) => (isBlock(x) ? `${pad}- ${toYAML(x, `${pad}  `).slice(pad.length + 2)}` : `${pad}- ${inline(x)}`))
      .join('\n');
  }
  return Object.entries(v).map(([k, x]) => (isBlock(x)
    ? `${pad}${yamlScalar(k)}:\n${toYAML(x, Array.isArray(x) ? pad : `${pad}  `)}`
    : `${pad}${yamlScalar(k)}: ${inline(x)}`)).join('\n');
}

// what an apply would send back: no status, no fields the server sets
function applicable(o) {
  const copy = structuredClone(o);
  delete copy.status;
  for (const f of ['managedFields', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'selfLink']) {
    delete copy.metadata[f];
  }
  return copy;
}

function openYAML(path) {
  $('yaml-path').value = path;
  state.yamlPending = true;
  go('yaml');
}

async function loadYAML(signal) {
  const o = await api($('yaml-path').value.trim(), { signal });
  $('yaml-text').value = `${toYAML(applicable(o))}\n`;
  $('yaml-result').textContent = `loaded ${o.kind} ${o.metadata.name} at resourceVersion ${o.metadata.resourceVersion}`;
}

async function applyYAML() {
  const q = new URLSearchParams({ fieldManager: MANAGER });
  if ($('yaml-force').checked) q.set('force', 'true');
  try {
    const o = await api(`${$('yaml-path').value.trim()}?${q}`, {
      method: 'PATCH', headers: { 'Content-Type': 'application/apply-patch+yaml' }, body: $('yaml-text').value,
    });
    $('yaml-result').textContent = `applied: ${o.kind} ${o.metadata.name} at resourceVersion ${o.metadata.resourceVersion}`;
  } catch (e) {
    $('yaml-result').textContent = `not applied: ${e.message}`;
  }
}

async function showYAML(signal) {
  focusHeading('yaml');
  if (state.yamlPending) {
    state.yamlPending = false;
    await loadYAML(signal);
  }
}

// ------------------------------------------------------------------ session
async function loadNamespaces() {
  const select = $('namespace');
  let names = [state.ns];
  try {
    names = (await api('/api/v1/namespaces')).items.map((n) => n.metadata.name);
  } catch (e) {
    if (e.code === 401) throw e;  // a token the server refuses; any other answer: keep "default"
  }
  if (!names.includes(state.ns)) names.unshift(state.ns);
  select.replaceChildren(...names.map((n) => new Option(n, n, false, n === state.ns)));
}

async function start() {
  $('login').hidden = true;
  $('app').hidden = false;
  $('session').hidden = false;
  await loadNamespaces();
  route();
}

function logout(message = '') {
  sessionStorage.removeItem(TOKEN_KEY);
  state.stop.abort();
  $('app').hidden = true;
  $('session').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('token').focus();
}

function init() {
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
    $('token').value = '';
    $('login-error').textContent = '';
    try { await start(); } catch (err) { if (err.code !== 401) logout(err.message); }
  });
  $('logout').addEventListener('click', () => logout());
  $('namespace').addEventListener('change', (e) => { state.ns = e.target.value; route(); });
  $('logs-form').addEventListener('submit', (e) => {
    e.preventDefault();
    state.stop.abort();
    state.stop = new AbortController();
    streamLogs(state.stop.signal);
  });
  $('logs-stop').addEventListener('click', () => { state.stop.abort(); status('stopped'); });
  $('events-refresh').addEventListener('click', () => route());
  $('nodes-refresh').addEventListener('click', () => route());
  $('yaml-load').addEventListener('click', () => loadYAML(state.stop.signal).catch(fail));
  $('yaml-form').addEventListener('submit', (e) => { e.preventDefault(); applyYAML(); });
  window.addEventListener('hashchange', route);
  if (token()) start().catch(fail);
  else $('token').focus();
}

init();
