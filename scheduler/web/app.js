/* volq dashboard: polls the JSON API of volq-scheduler (SPEC §4) every 2 s and
 * renders it with DOM calls only (textContent, never innerHTML), so data from
 * disks, jobs and events can never become markup.  No framework, no build
 * step, no inline script or style: the page runs under a strict CSP. */
'use strict';

(() => {
  const REFRESH_MS = 2000;
  const JOBS_LIMIT = 200;          // per state and refresh
  const EVENTS_SHOWN = 200;        // newest events kept on the page
  const EVENTS_PAGE = 1000;        // events per request while catching up
  const EVENTS_PAGES_PER_TICK = 10;
  const TOKEN_KEY = 'volq.token';
  const DOMAIN_KEY = 'volq.domain';
  const STATES = ['queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled'];
  const DASH = '\u2013';

  const $ = (id) => document.getElementById(id);

  const st = {
    domains: [],
    domainSig: '',
    domain: null,            // selected domain object
    disks: [],
    aliases: new Map(),      // disk id -> alias, for every domain seen
    lastEvent: null,         // id of the newest event shown ("ms-seq")
    failed: [],
    ticks: 0,
    timer: 0,
    running: false,
    again: false,
  };

  /* ---- small DOM helpers ------------------------------------------------ */

  /* el('td', {class: 'x', 'data-label': 'Alias'}, 'text', childNode): strings
   * become text nodes (Node.append), so they are never parsed as HTML. */
  function el(tag, attrs, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') n.className = v;
      else if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of kids) if (c !== null && c !== undefined) n.append(c);
    return n;
  }

  function setText(node, text) {
    const s = String(text);
    if (node.textContent !== s) node.textContent = s;
  }

  function setAttr(node, name, value) {
    if (value === null || value === undefined) node.removeAttribute(name);
    else if (node.getAttribute(name) !== String(value)) node.setAttribute(name, String(value));
  }

  const short = (id) => (id ? String(id).slice(0, 8) : DASH);
  const enc = encodeURIComponent;

  function aliasOf(diskId) {
    return st.aliases.get(diskId) || short(diskId);
  }

  function fmtTime(iso) {
    if (!iso) return DASH;
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function fmtDuration(s) {
    s = Math.max(0, Math.round(Number(s) || 0));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  /* Keeps the rows of tbody in the order of items, one row per key, reusing
   * the rows already there: a button that has the keyboard focus stays in
   * the page across refreshes. */
  function syncRows(tbody, items, keyOf, build, update) {
    const keys = new Set(items.map(keyOf));
    for (const tr of Array.from(tbody.rows)) if (!keys.has(tr.dataset.key)) tr.remove();
    const have = new Map(Array.from(tbody.rows, (tr) => [tr.dataset.key, tr]));
    items.forEach((item, i) => {
      const key = keyOf(item);
      let tr = have.get(key);
      if (!tr) {
        tr = build(item);
        tr.dataset.key = key;
      }
      update(tr, item);
      if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
    });
  }

  /* A row of cells, each with a class and the column name (data-label, shown
   * before the value when the table folds into cards on a narrow screen). */
  function row(cols) {
    return el('tr', null, ...cols.map(([cls, label]) => el('td', {class: cls, 'data-label': label})));
  }

  function cell(tr, cls) {
    return tr.querySelector('td.' + cls);
  }

  function showEmpty(id, empty) {
    $(id).hidden = !empty;
  }

  /* ---- the API ---------------------------------------------------------- */

  let memToken = null; // when sessionStorage is unavailable

  function getToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || memToken;
    } catch (e) {
      return memToken;
    }
  }

  function putToken(t) {
    memToken = t;
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* memory only */ }
  }

  class NetError extends Error {}

  async function request(method, path, body) {
    const headers = {Accept: 'application/json'};
    const token = getToken();
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = {method, headers, cache: 'no-store', credentials: 'same-origin',
                  redirect: 'error'};
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new NetError('cannot reach the scheduler');
    }
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) { /* not JSON: keep null */ }
    return {status: res.status, ok: res.ok, data, hadToken: Boolean(token)};
  }

  /* A request; on 401 asks for the token once (a refused token is dropped
   * and asked for again), then repeats the request with it. */
  async function api(method, path, body) {
    let r = await request(method, path, body);
    if (r.status !== 401) return r;
    if (r.hadToken) putToken(null);
    const t = await askToken(r.hadToken ? 'The scheduler refused the token it was given.' : '');
    if (!t) return r;
    r = await request(method, path, body);
    if (r.status === 401) putToken(null);
    return r;
  }

  /* GET that must answer 200 with JSON; throws otherwise. */
  async function getJSON(path) {
    const r = await request('GET', path);
    if (!r.ok) {
      const err = new Error(errorText(r));
      err.status = r.status;
      err.data = r.data;
      throw err;
    }
    return r.data;
  }

  function errorText(r) {
    const d = r.data || {};
    if (d.error) return d.reason && !String(d.error).includes(d.reason)
      ? d.error + ' (' + d.reason + ')' : d.error;
    return 'HTTP ' + r.status;
  }

  /* ---- dialogs ---------------------------------------------------------- */

  let tokenWait = null; // {promise, resolve} while the token dialog is open

  function askToken(why) {
    if (tokenWait) return tokenWait.promise;
    const dlg = $('token-dialog');
    let resolve;
    const promise = new Promise((res) => { resolve = res; });
    tokenWait = {promise, resolve};
    $('token').value = '';
    setText($('token-text'), (why ? why + ' ' : '') +
      'This scheduler asks for a token (VOLQ_TOKEN) before it changes anything. ' +
      'It is kept in this tab only (session storage).');
    dlg.showModal();
    $('token').focus();
    return promise;
  }

  function endToken(value) {
    const w = tokenWait;
    if (!w) return;
    tokenWait = null;
    if ($('token-dialog').open) $('token-dialog').close();
    if (value) putToken(value);
    w.resolve(value || null);
  }

  let confirmWait = null;

  function askConfirm(title, text, okLabel) {
    if (confirmWait) confirmWait(false);
    setText($('confirm-h'), title);
    setText($('confirm-text'), text);
    setText($('confirm-ok'), okLabel);
    const dlg = $('confirm-dialog');
    dlg.showModal();
    $('confirm-cancel').focus(); // the safe choice has the focus
    return new Promise((res) => { confirmWait = res; });
  }

  function endConfirm(yes) {
    const w = confirmWait;
    confirmWait = null;
    if ($('confirm-dialog').open) $('confirm-dialog').close();
    if (w) w(yes);
  }

  function wireDialogs() {
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault(); // never navigates: form-action 'none' holds
      const v = $('token').value.trim();
      if (v) endToken(v);
    });
    $('token-cancel').addEventListener('click', () => endToken(null));
    $('token-dialog').addEventListener('close', () => endToken(null));
    $('confirm-ok').addEventListener('click', () => endConfirm(true));
    $('confirm-cancel').addEventListener('click', () => endConfirm(false));
    $('confirm-dialog').addEventListener('close', () => endConfirm(false));
  }

  /* ---- notices and connection state ------------------------------------ */

  function notice(text, kind) {
    const n = $('notice');
    n.hidden = false;
    n.className = 'notice ' + (kind || 'ok');
    n.dataset.kind = kind || 'ok';
    setText(n, text);
  }

  function setConn(state, text) {
    const c = $('conn');
    c.dataset.state = state;
    setText(c, text);
  }

  /* ---- queue status ------------------------------------------------------ */

  function renderStatus(s) {
    const jobs = s.jobs || {};
    for (const li of $('states').children) {
      const n = Number(jobs[li.dataset.state] || 0);
      setText(li.querySelector('.n'), n);
      li.classList.toggle('zero', n === 0);
    }
    setText($('jobs-per-min'), s.jobs_per_min === undefined ? DASH : String(s.jobs_per_min));
    const waiting = Number(jobs.queued || 0) + Number(jobs.retrying || 0);
    setText($('oldest'), waiting ? fmtDuration(s.oldest_waiting_s) + ' waiting' : 'none waiting');
    setText($('redis'), s.redis || DASH);
    const workers = Array.isArray(s.workers) ? s.workers : [];
    setText($('workers-n'), '(' + workers.length + ')');
    syncRows($('workers').tBodies[0], workers, (w) => w.host + ':' + w.pid,
      () => row([['c-host', 'Host'], ['c-pid', 'PID'], ['c-job', 'Current job']]),
      (tr, w) => {
        setText(cell(tr, 'c-host'), w.host);
        setText(cell(tr, 'c-pid'), w.pid);
        setText(cell(tr, 'c-job'), w.job_id ? short(w.job_id) + ' (' + jobDisk(w.job_id) + ')' : 'idle');
        setAttr(cell(tr, 'c-job'), 'title', w.job_id || null);
      });
    showEmpty('workers-empty', workers.length === 0);
  }

  const jobDisks = new Map(); // job id -> disk id, from the job lists

  function jobDisk(jobId) {
    const d = jobDisks.get(jobId);
    return d ? aliasOf(d) : 'job';
  }

  async function loadStatus() {
    try {
      renderStatus(await getJSON('api/status'));
      return 'up';
    } catch (e) {
      if (e instanceof NetError) throw e;
      if (e.status === 503) {
        setText($('redis'), 'down');
        return 'redis-down';
      }
      throw e;
    }
  }

  /* ---- domains and disks ------------------------------------------------ */

  function domainLabel(d) {
    const v = d.version === null || d.version === undefined ? '?' : d.version;
    return d.id + ' (version ' + v + ', ' + d.disks + ' disk' + (d.disks === 1 ? '' : 's') +
      (d.status === 'ok' ? '' : ', ' + d.status) + ')';
  }

  function savedDomain() {
    try { return sessionStorage.getItem(DOMAIN_KEY); } catch (e) { return null; }
  }

  function renderDomains(list) {
    const sel = $('domain');
    st.domains = list;
    const sig = JSON.stringify(list.map((d) => [d.id, d.version, d.status, d.disks]));
    if (sig !== st.domainSig) {
      const keep = sel.value || savedDomain();
      sel.replaceChildren(...list.map((d) => el('option', {value: d.id}, domainLabel(d))));
      if (list.some((d) => d.id === keep)) sel.value = keep;
      st.domainSig = sig;
    }
    if (!list.length) sel.replaceChildren(el('option', {value: ''}, 'no storage domain under the root'));
    sel.disabled = list.length === 0;
    st.domain = list.find((d) => d.id === sel.value) || null;
    renderDomainInfo();
  }

  function renderDomainInfo() {
    const d = st.domain;
    const info = $('domain-info');
    if (!d) {
      setText(info, '');
    } else if (d.status !== 'ok') {
      setText(info, 'illegal: ' + (d.reason || 'unknown reason') + '; no job runs on it');
    } else if (d.version === 3) {
      setText(info, 'version 3: tick "raise to version 4" to upgrade (compat 1.1 needs V4)');
    } else if (d.version < 3) {
      setText(info, 'version ' + d.version + ': too old for compat 1.1');
    } else {
      setText(info, 'version ' + d.version + ', ok');
    }
    info.dataset.status = d ? d.status : '';
    updateUpgradeButton();
  }

  function updateUpgradeButton() {
    const d = st.domain;
    const ok = Boolean(d) && d.status === 'ok' &&
      (d.version >= 4 || (d.version === 3 && $('to-v4').checked));
    $('upgrade').disabled = !ok;
  }

  /* The first of the disk's own volumes that is not LEGAL (an amend of the
   * disk is refused until it is repaired), or undefined. */
  function badVolume(d) {
    return (d.volumes || []).find((v) => v.voltype !== 'SHARED' && v.legality !== 'LEGAL');
  }

  /* A disk the page offers to amend: one of its own qcow2 volumes is at 0.10.
   * One with a volume that is not LEGAL keeps its button: the refusal is
   * recorded as a failed job with its reason, as for any other refusal. */
  function amendable(d) {
    if (d.template || d.status !== 'ok' || d.locked_by) return false;
    return (d.volumes || []).some((v) => v.voltype !== 'SHARED' && v.format === 'cow' &&
                                         v.compat === '0.10');
  }

  function qcowCounts(disks) {
    const qcow = disks.filter((d) => !d.template && d.format === 'cow');
    const v3 = qcow.filter((d) => d.qcow_version === 'qcow2_v3');
    return {total: qcow.length, v3: v3.length};
  }

  function renderBar(disks) {
    const c = qcowCounts(disks);
    const bar = $('v3-bar');
    const pct = c.total ? Math.floor((100 * c.v3) / c.total) : 100;
    bar.max = Math.max(c.total, 1);
    bar.value = c.total ? c.v3 : 1;
    const text = c.total ? c.v3 + ' of ' + c.total + ' (' + pct + ' %)' : 'no qcow disk';
    setAttr(bar, 'aria-valuetext', text);
    bar.dataset.percent = String(pct);
    setText($('v3-text'), text);
  }

  function buildDiskRow() {
    const tr = row([['c-alias', 'Alias'], ['c-format', 'Format'], ['c-qcow', 'qcow version'],
                    ['c-template', 'Template'], ['c-status', 'Status'], ['c-locked', 'Locked by'],
                    ['c-action', 'Action']]);
    const b = el('button', {type: 'button', class: 'amend'}, 'Amend');
    b.addEventListener('click', () => amendDisk(tr.dataset.key, b));
    cell(tr, 'c-action').append(b);
    return tr;
  }

  function updateDiskRow(tr, d) {
    setText(cell(tr, 'c-alias'), d.alias);
    setText(cell(tr, 'c-format'), d.format || DASH);
    setText(cell(tr, 'c-qcow'), d.qcow_version || DASH);
    setText(cell(tr, 'c-template'), d.template ? 'yes' : 'no');
    const status = cell(tr, 'c-status');
    const bad = badVolume(d);
    setText(status, (d.reason ? d.status + ': ' + d.reason : d.status) +
      (bad ? ' (volume ' + short(bad.id) + ' ' + bad.legality + ')' : ''));
    status.dataset.status = d.status;
    const locked = cell(tr, 'c-locked');
    setText(locked, d.locked_by ? short(d.locked_by) : DASH);
    setAttr(locked, 'title', d.locked_by || null);
    const b = tr.querySelector('button.amend');
    b.hidden = !amendable(d);
    setAttr(b, 'aria-label', 'Amend disk ' + d.alias + ' to qcow2_v3');
  }

  function renderDisks(disks) {
    st.disks = disks;
    for (const d of disks) st.aliases.set(d.id, d.alias);
    syncRows($('disks').tBodies[0], disks, (d) => d.id, buildDiskRow, updateDiskRow);
    setText($('disks-n'), '(' + disks.length + ')');
    showEmpty('disks-empty', disks.length === 0);
    renderBar(disks);
  }

  /* By alias (numbers in order: vm2 before vm10), then id: the API lists
   * disks in folder order, which means nothing to a reader. */
  const collator = new Intl.Collator(undefined, {numeric: true, sensitivity: 'base'});

  function sortDisks(disks) {
    return disks.slice().sort((a, b) => collator.compare(String(a.alias), String(b.alias)) ||
                                        (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async function loadDomainsAndDisks() {
    renderDomains(await getJSON('api/storagedomains'));
    const d = st.domain;
    if (!d) {
      renderDisks([]);
      return;
    }
    try {
      const disks = await getJSON('api/storagedomains/' + enc(d.id) + '/disks');
      if (st.domain && st.domain.id === d.id) renderDisks(Array.isArray(disks) ? sortDisks(disks) : []);
    } catch (e) {
      if (e instanceof NetError || e.status === 503) throw e;
      renderDisks([]);
      setText($('disks-empty'), 'Cannot list the disks: ' + e.message);
    }
  }

  /* ---- jobs ------------------------------------------------------------- */

  function jobsOf(state) {
    return getJSON('api/jobs?state=' + state + '&limit=' + JOBS_LIMIT);
  }

  function buildActiveRow() {
    const tr = row([['c-disk', 'Disk'], ['c-kind', 'Kind'], ['c-state', 'State'],
                    ['c-progress', 'Progress'], ['c-worker', 'Worker'], ['c-action', 'Action']]);
    cell(tr, 'c-progress').append(el('progress', {max: '1'}), ' ', el('span', {class: 'ptext'}));
    const b = el('button', {type: 'button', class: 'cancel'}, 'Cancel');
    b.addEventListener('click', () => cancelJob(tr.dataset.key, b));
    cell(tr, 'c-action').append(b);
    return tr;
  }

  function updateActiveRow(tr, j) {
    setText(cell(tr, 'c-disk'), aliasOf(j.disk_id));
    setText(cell(tr, 'c-kind'), j.kind);
    const s = cell(tr, 'c-state');
    const next = j.state === 'retrying' && j.next_attempt ? ' (next ' + fmtTime(j.next_attempt) + ')' : '';
    setText(s, j.state + next);
    s.dataset.state = j.state;
    const p = j.progress || {};
    const bar = tr.querySelector('progress');
    const text = tr.querySelector('.ptext');
    if (p.total > 0) {
      bar.max = p.total;
      bar.value = Math.min(p.done, p.total);
      setText(text, p.done + ' of ' + p.total + ' volumes');
    } else {
      bar.removeAttribute('value'); // indeterminate
      setText(text, j.state === 'running' ? 'starting' : 'waiting');
    }
    setAttr(bar, 'aria-label', 'Progress of ' + j.kind + ' on ' + aliasOf(j.disk_id));
    setText(cell(tr, 'c-worker'), j.worker || DASH);
    const b = tr.querySelector('button.cancel');
    b.hidden = !(j.state === 'queued' || j.state === 'retrying');
    setAttr(b, 'aria-label', 'Cancel the ' + j.kind + ' job of ' + aliasOf(j.disk_id));
  }

  function buildFailedRow() {
    const tr = row([['c-disk', 'Disk'], ['c-kind', 'Kind'], ['c-reason', 'Reason'],
                    ['c-attempts', 'Attempts'], ['c-ended', 'Ended'], ['c-action', 'Action']]);
    const b = el('button', {type: 'button', class: 'retry'}, 'Retry');
    b.addEventListener('click', () => retryJob(tr.dataset.key, b));
    cell(tr, 'c-action').append(b);
    return tr;
  }

  function updateFailedRow(tr, j) {
    setText(cell(tr, 'c-disk'), aliasOf(j.disk_id));
    setAttr(cell(tr, 'c-disk'), 'title', 'job ' + j.id);
    setText(cell(tr, 'c-kind'), j.kind);
    setText(cell(tr, 'c-reason'), j.reason || 'no reason recorded');
    setText(cell(tr, 'c-attempts'), j.attempts + ' of ' + j.max_attempts);
    const ended = cell(tr, 'c-ended');
    setText(ended, fmtTime(j.updated));
    setAttr(ended, 'title', j.updated || null);
    setAttr(tr.querySelector('button.retry'), 'aria-label',
      'Retry the ' + j.kind + ' job of ' + aliasOf(j.disk_id));
  }

  async function loadJobs() {
    const [running, retrying, queued, failed] = await Promise.all(
      ['running', 'retrying', 'queued', 'failed'].map(jobsOf));
    const active = [].concat(running, retrying, queued);
    for (const j of active.concat(failed)) jobDisks.set(j.id, j.disk_id);
    syncRows($('active').tBodies[0], active, (j) => j.id, buildActiveRow, updateActiveRow);
    setText($('active-n'), '(' + active.length + ')');
    showEmpty('active-empty', active.length === 0);
    st.failed = failed;
    syncRows($('failed').tBodies[0], failed, (j) => j.id, buildFailedRow, updateFailedRow);
    setText($('failed-n'), '(' + failed.length + ')');
    showEmpty('failed-empty', failed.length === 0);
    $('retry-all').disabled = failed.length === 0;
  }

  /* ---- audit events ----------------------------------------------------- */

  function eventItem(e) {
    const sev = e.severity === 'error' ? 'error' : 'info';
    const li = el('li', {class: 'ev sev-' + sev, 'data-id': e.id},
      el('time', {datetime: e.time, title: e.time}, fmtTime(e.time)), ' ',
      el('span', {class: 'sev'}, sev), ' ',
      el('span', {class: 'msg'}, e.message || e.type || ''));
    if (e.reason) li.append(' ', el('span', {class: 'why'}, e.reason));
    return li;
  }

  function addEvents(events) {
    const list = $('events');
    const fresh = events.slice(-EVENTS_SHOWN).reverse(); // newest first
    list.prepend(...fresh.map(eventItem));
    while (list.children.length > EVENTS_SHOWN) list.lastElementChild.remove();
    showEmpty('events-empty', list.children.length === 0);
  }

  /* Events after the last one seen; catches up a long backlog a few pages per
   * refresh so that one tick stays short. */
  async function loadEvents() {
    for (let page = 0; page < EVENTS_PAGES_PER_TICK; page++) {
      const since = st.lastEvent ? '&since=' + enc(st.lastEvent) : '';
      const evs = await getJSON('api/events?limit=' + EVENTS_PAGE + since);
      if (!Array.isArray(evs) || evs.length === 0) return;
      st.lastEvent = evs[evs.length - 1].id;
      addEvents(evs);
      if (evs.length < EVENTS_PAGE) return;
    }
  }

  /* ---- refresh loop ----------------------------------------------------- */

  async function tick() {
    if (st.running) {
      st.again = true;
      return;
    }
    st.running = true;
    clearTimeout(st.timer);
    try {
      const results = await Promise.allSettled([loadStatus(), loadDomainsAndDisks(), loadJobs(),
                                                loadEvents()]);
      const failed = results.find((r) => r.status === 'rejected');
      const redisDown = results[0].status === 'fulfilled' && results[0].value === 'redis-down';
      if (failed && failed.reason instanceof NetError) {
        setConn('down', 'Cannot reach the scheduler; retrying every ' + REFRESH_MS / 1000 + ' s');
      } else if (redisDown) {
        setConn('redis-down', 'The scheduler cannot reach Redis; retrying');
      } else if (failed) {
        setConn('error', 'Refresh failed: ' + failed.reason.message);
      } else {
        setConn('live', 'Live, updated ' + new Date().toLocaleTimeString());
      }
    } finally {
      st.running = false;
      document.documentElement.dataset.ticks = String(++st.ticks);
      if (st.again) {
        st.again = false;
        st.timer = setTimeout(tick, 0);
      } else {
        st.timer = setTimeout(tick, REFRESH_MS);
      }
    }
  }

  /* ---- actions ---------------------------------------------------------- */

  /* Runs a changing request with its button disabled; reports the outcome. */
  async function act(button, method, path, body, done) {
    if (button) button.disabled = true;
    try {
      const r = await api(method, path, body);
      if (r.ok) done(r.data || {});
      else notice(errorText(r), 'error');
    } catch (e) {
      notice(e.message, 'error');
    } finally {
      if (button) button.disabled = false;
      tick();
    }
  }

  function amendDisk(diskId, button) {
    const d = st.disks.find((x) => x.id === diskId);
    const alias = d ? d.alias : short(diskId);
    const sd = d ? d.storage_domain : st.domain && st.domain.id;
    act(button, 'PUT', 'api/storagedomains/' + enc(sd) + '/disks/' + enc(diskId),
      {qcow_version: 'qcow2_v3'},
      (j) => notice('Amend of ' + alias + ' accepted as job ' + short(j.id) + '.', 'ok'));
  }

  function retryJob(jobId, button) {
    act(button, 'POST', 'api/jobs/' + enc(jobId) + '/retry', undefined,
      () => notice('Job ' + short(jobId) + ' (' + jobDisk(jobId) + ') queued again.', 'ok'));
  }

  function retryAll() {
    const n = st.failed.length;
    act($('retry-all'), 'POST', 'api/jobs/retry', undefined, (r) => {
      const retried = r.retried !== undefined ? r.retried : n;
      const left = r.left ? ', ' + r.left + ' left (their disks are locked)' : '';
      notice('Retried ' + retried + ' failed job' + (retried === 1 ? '' : 's') + left + '.', 'ok');
    });
  }

  function cancelJob(jobId, button) {
    act(button, 'DELETE', 'api/jobs/' + enc(jobId), undefined,
      () => notice('Job ' + short(jobId) + ' (' + jobDisk(jobId) + ') cancelled.', 'ok'));
  }

  function skippedSummary(skipped) {
    const by = new Map();
    for (const s of skipped) {
      const k = s.code || s.reason || 'skipped';
      by.set(k, (by.get(k) || 0) + 1);
    }
    return Array.from(by, ([k, n]) => n + ' ' + k.replace(/_/g, ' ')).join(', ');
  }

  async function upgradeDomain() {
    const d = st.domain;
    if (!d) return;
    const toV4 = $('to-v4').checked;
    const todo = st.disks.filter((x) => amendable(x) && !badVolume(x)).length;
    const bad = st.disks.filter((x) => amendable(x) && badVolume(x)).length;
    const c = qcowCounts(st.disks);
    const text = 'Amend every eligible disk of storage domain ' + d.id + ' to qcow2_v3 ' +
      '(compat 1.1): ' + todo + ' disk' + (todo === 1 ? '' : 's') + ' to amend, ' + c.v3 +
      ' of ' + c.total + ' qcow disks already at qcow2_v3.' +
      (bad ? ' ' + bad + ' disk' + (bad === 1 ? ' has a volume' : 's have volumes') +
             ' that is not LEGAL and will be skipped.' : '') +
      (toV4 && d.version === 3 ? ' The domain is first raised from version 3 to 4.' : '') +
      ' Templates, raw disks and disks in use are skipped.';
    if (!(await askConfirm('Upgrade storage domain?', text, 'Upgrade'))) {
      $('upgrade').focus();
      return;
    }
    await act($('upgrade'), 'POST', 'api/storagedomains/' + enc(d.id) + '/upgrade',
      {to_v4: toV4}, (r) => {
        const jobs = r.jobs || [];
        const skipped = r.skipped || [];
        notice('Upgrade of ' + short(d.id) + ' accepted: ' + jobs.length + ' job' +
          (jobs.length === 1 ? '' : 's') + ' queued, ' + skipped.length + ' disk' +
          (skipped.length === 1 ? '' : 's') + ' skipped' +
          (skipped.length ? ' (' + skippedSummary(skipped) + ')' : '') + '.', 'ok');
      });
    $('upgrade').focus();
  }

  /* ---- start ------------------------------------------------------------ */

  function start() {
    wireDialogs();
    $('domain').addEventListener('change', () => {
      try { sessionStorage.setItem(DOMAIN_KEY, $('domain').value); } catch (e) { /* ignore */ }
      st.domain = st.domains.find((d) => d.id === $('domain').value) || null;
      renderDomainInfo();
      renderDisks([]);
      tick();
    });
    $('to-v4').addEventListener('change', updateUpgradeButton);
    $('upgrade').addEventListener('click', upgradeDomain);
    $('retry-all').addEventListener('click', retryAll);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) tick();
    });
    tick();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
