// Atelier console: plain JavaScript over the gateway's own routes (/api/image-studio/*, /v1/*).
// No framework, no build step, nothing from another origin. Every element is made with the DOM API
// and every text set with textContent, so nothing a server answers is ever parsed as HTML.
'use strict';

(() => {
  const STUDIO = '/api/image-studio';
  const STORE_KEY = 'atelier.console.key';
  const STORE_ACCOUNT = 'atelier.console.account';
  const TERMINAL_JOB = new Set(['succeeded', 'partially_succeeded', 'failed', 'cancelled']);

  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

  const state = {
    key: '',
    account: '',
    view: 'studio',
    folders: [],
    sku: null,
    folder: null,
    pairs: [],
    selected: new Set(),
    groups: [],
    jobs: [],
    watch: null,
    ledgerToken: null,
    comparePair: null,
  };

  // ---------------------------------------------------------------- DOM helpers

  /** An element with attributes (`text` sets its text, `on*` listeners) and children. */
  function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'text') el.textContent = String(value);
      else if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
      else if (value === true) el.setAttribute(name, '');
      else el.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function show(el, visible) {
    el.hidden = !visible;
  }

  function when(text) {
    if (!text) return '';
    const d = new Date(text);
    return Number.isNaN(d.getTime()) ? String(text) : d.toLocaleString();
  }

  function shortId(id) {
    return id ? String(id).slice(0, 8) : '';
  }

  function randomKey() {
    if (window.crypto && typeof window.crypto.randomUUID === 'function') return window.crypto.randomUUID();
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  // ---------------------------------------------------------------- errors and notices

  /** A failure answered by the gateway (or the network), with its Atelier code when there is one. */
  class ConsoleError extends Error {
    constructor(message, { status = 0, code = null, reason = null } = {}) {
      super(message);
      this.status = status;
      this.code = code;
      this.reason = reason;
    }

    describe() {
      const parts = [];
      if (this.code !== null && this.code !== undefined) parts.push(`error ${this.code}`);
      if (this.reason) parts.push(this.reason);
      if (this.status) parts.push(`HTTP ${this.status}`);
      return parts.length ? `${this.message} (${parts.join(', ')})` : this.message;
    }
  }

  /** Reads both error shapes: the studio routes' `{error, code}` and /v1's `{error: {code, reason, message, details}}`. */
  function errorFrom(response, body, text) {
    const status = response.status;
    if (body && typeof body.error === 'string') {
      return new ConsoleError(body.error, { status, code: body.code ?? null });
    }
    if (body && body.error && typeof body.error === 'object') {
      const e = body.error;
      let message = e.message || e.reason || 'the request failed';
      if (Array.isArray(e.details) && e.details.length) {
        const fields = e.details.map((d) => `${d.field}: ${d.description}`).join('; ');
        if (!message.includes(fields)) message = `${message} [${fields}]`;
      }
      return new ConsoleError(message, { status, code: e.code ?? null, reason: e.reason ?? null });
    }
    if (body && (body.detail || body.message)) {
      return new ConsoleError(String(body.detail || body.message), { status, code: body.code ?? null });
    }
    const snippet = (text || '').trim().slice(0, 200);
    return new ConsoleError(snippet ? `${response.statusText || 'failed'}: ${snippet}` : (response.statusText || 'the request failed'), { status });
  }

  function describe(err) {
    if (err instanceof ConsoleError) return err.describe();
    return err && err.message ? err.message : String(err);
  }

  function showError(context, err) {
    $('error-text').textContent = `${context}: ${describe(err)}`;
    show($('error-banner'), true);
  }

  function clearError() {
    show($('error-banner'), false);
    $('error-text').textContent = '';
  }

  function notice(text) {
    $('notice').textContent = text;
  }

  /** Runs an action from a button: disables it meanwhile, shows a failure in words. */
  async function act(context, button, fn) {
    if (button) button.disabled = true;
    clearError();
    try {
      return await fn();
    } catch (err) {
      showError(context, err);
      return undefined;
    } finally {
      if (button) button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- the gateway

  function authHeaders() {
    return { Authorization: `Bearer ${state.key}`, 'X-Atelier-Account': state.account };
  }

  async function api(method, path, body, extraHeaders = {}) {
    const headers = { ...authHeaders(), Accept: 'application/json', ...extraHeaders };
    let payload;
    if (body instanceof FormData) {
      payload = body;
    } else if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body: payload, cache: 'no-store' });
    } catch (err) {
      throw new ConsoleError(`the gateway could not be reached (${err.message})`);
    }
    const text = await response.text();
    let json = null;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
    }
    if (!response.ok) throw errorFrom(response, json, text);
    if (text && json === null) throw new ConsoleError(`the gateway answered something that is not JSON (HTTP ${response.status})`);
    return json;
  }

  const get = (path) => api('GET', path);
  const post = (path, body, headers) => api('POST', path, body, headers);
  const skuPath = (sku) => encodeURIComponent(sku);

  // ---------------------------------------------------------------- sign in / out

  async function signIn(event) {
    event.preventDefault();
    const key = $('signin-key').value.trim();
    const account = $('signin-account').value.trim();
    const error = $('signin-error');
    show(error, false);
    if (!key || !account) {
      error.textContent = 'Give both the API key and the account.';
      show(error, true);
      return;
    }
    state.key = key;
    state.account = account;
    const button = $('signin-submit');
    button.disabled = true;
    try {
      const acct = await get('/v1/account');
      sessionStorage.setItem(STORE_KEY, key);
      sessionStorage.setItem(STORE_ACCOUNT, account);
      $('signin-key').value = '';
      enter(acct);
    } catch (err) {
      state.key = '';
      state.account = '';
      error.textContent = `Sign-in refused: ${describe(err)}`;
      show(error, true);
    } finally {
      button.disabled = false;
    }
  }

  function signOut() {
    stopWatching();
    sessionStorage.removeItem(STORE_KEY);
    sessionStorage.removeItem(STORE_ACCOUNT);
    Object.assign(state, {
      key: '', account: '', folders: [], sku: null, folder: null, pairs: [], groups: [], jobs: [], ledgerToken: null,
    });
    state.selected.clear();
    clearError();
    notice('Signed out.');
    show($('nav'), false);
    show($('who'), false);
    show($('studio'), false);
    show($('account'), false);
    show($('signin'), true);
    $('signin-key').focus();
  }

  function enter(acct) {
    show($('signin'), false);
    show($('nav'), true);
    show($('who'), true);
    $('who-account').textContent = `Account ${state.account}`;
    renderBalance(acct);
    setView('studio');
    loadFolders();
    loadGroups();
    notice(`Signed in as ${state.account}.`);
  }

  function renderBalance(acct) {
    $('who-balance').textContent = acct ? `${acct.balance} units` : '';
  }

  async function refreshBalance() {
    try {
      renderBalance(await get('/v1/account'));
    } catch (err) {
      showError('Reading the account', err);
    }
  }

  function setView(view) {
    state.view = view;
    show($('studio'), view === 'studio');
    show($('account'), view === 'account');
    for (const tab of document.querySelectorAll('.tab')) {
      if (tab.dataset.view === view) tab.setAttribute('aria-current', 'page');
      else tab.removeAttribute('aria-current');
    }
    if (view === 'account') loadAccount();
  }

  // ---------------------------------------------------------------- workspaces

  function counts(folder) {
    return `${folder.total} image${folder.total === 1 ? '' : 's'} · ${folder.generated} generated · ${folder.approved} approved`;
  }

  function badge(status, testid) {
    return h('span', { class: `badge s-${status}`, 'data-testid': testid, text: status });
  }

  async function loadFolders() {
    const filter = $('folder-filter').value;
    try {
      const answer = await get(`${STUDIO}/folders${filter ? `?status=${encodeURIComponent(filter)}` : ''}`);
      state.folders = answer.folders || [];
      renderFolders();
    } catch (err) {
      showError('Listing the workspaces', err);
    }
  }

  function renderFolders() {
    const list = $('folder-list');
    list.replaceChildren(...state.folders.map((f) => {
      const thumb = f.thumbnail
        ? h('img', { src: f.thumbnail, alt: '', loading: 'lazy', class: 'thumb' })
        : h('span', { class: 'thumb none', 'aria-hidden': 'true' });
      const button = h('button', {
        type: 'button',
        class: 'folder',
        'data-testid': 'folder-item',
        'data-sku': f.sku,
        'data-status': f.status,
        'aria-current': f.sku === state.sku ? 'true' : null,
        onclick: () => openFolder(f.sku),
      }, thumb, h('span', { class: 'folder-text' },
        h('span', { class: 'folder-name', text: f.name || f.sku }),
        h('span', { class: 'folder-sku', text: f.name && f.name !== f.sku ? f.sku : '' }),
        h('span', { class: 'folder-meta' }, badge(f.status, 'folder-status'), ' ', h('span', { text: counts(f) }))));
      return h('li', {}, button);
    }));
    show($('folders-empty'), state.folders.length === 0);
  }

  async function createFolder(event) {
    event.preventDefault();
    const sku = $('create-sku').value.trim();
    const name = $('create-name').value.trim();
    const files = Array.from($('create-files').files || []);
    if (!sku) {
      showError('Creating a workspace', new ConsoleError('give the workspace a SKU'));
      $('create-sku').focus();
      return;
    }
    await act('Creating the workspace', $('create-submit'), async () => {
      const body = { sku };
      if (name) body.name = name;
      await post(`${STUDIO}/folders`, body);
      if (files.length) await upload(sku, files);
      $('create-folder-form').reset();
      notice(`Workspace ${sku} created${files.length ? ` with ${files.length} photo${files.length === 1 ? '' : 's'}` : ''}.`);
      await loadFolders();
      await openFolder(sku);
    });
  }

  async function upload(sku, files) {
    const form = new FormData();
    form.append('sku', sku);
    for (const file of files) form.append('file', file, file.name);
    return post(`${STUDIO}/upload`, form);
  }

  async function addFiles() {
    const input = $('add-files');
    const files = Array.from(input.files || []);
    if (!files.length || !state.sku) return;
    await act('Adding photos', $('add-files-button'), async () => {
      await upload(state.sku, files);
      notice(`${files.length} photo${files.length === 1 ? '' : 's'} added to ${state.sku}.`);
      await refreshFolder();
    });
    input.value = '';
  }

  async function openFolder(sku) {
    if (state.sku !== sku) {
      stopWatching();
      state.selected.clear();
      resetProgress();
      show($('logs'), false);
    }
    state.sku = sku;
    show($('workspace-none'), false);
    show($('workspace-detail'), true);
    renderFolders();
    await Promise.all([refreshFolder(), loadJobs()]);
    // A job still running on this workspace: follow it at once.
    const running = state.jobs.find((j) => j.status === 'queued' || j.status === 'processing');
    if (!state.watch && running && state.sku === sku) follow(running);
  }

  async function refreshFolder() {
    if (!state.sku) return;
    try {
      const answer = await get(`${STUDIO}/folders/${skuPath(state.sku)}/pairs`);
      state.folder = answer.folder;
      state.pairs = answer.pairs || [];
      for (const id of Array.from(state.selected)) {
        if (!state.pairs.some((p) => p.id === id)) state.selected.delete(id);
      }
      renderFolder();
      const i = state.folders.findIndex((f) => f.sku === state.folder.sku);
      if (i >= 0) {
        state.folders[i] = state.folder;
        renderFolders();
      }
    } catch (err) {
      showError(`Reading workspace ${state.sku}`, err);
    }
  }

  function renderFolder() {
    const f = state.folder;
    if (!f) return;
    $('ws-title').textContent = f.name && f.name !== f.sku ? `${f.name} (${f.sku})` : f.sku;
    const status = $('ws-status');
    status.textContent = f.status;
    status.className = `badge s-${f.status}`;
    $('ws-counts').textContent = counts(f);
    const archived = f.status === 'archived';
    show($('ws-archive'), !archived);
    show($('ws-activate'), archived);
    $('run-submit').disabled = archived;
    $('add-files-button').disabled = archived;
    renderPairs();
    renderRunPairs();
  }

  function renderPairs() {
    const grid = $('pair-grid');
    grid.replaceChildren(...state.pairs.map(pairCard));
    show($('pairs-empty'), state.pairs.length === 0);
    updateSelection();
  }

  function pairCard(p) {
    const name = p.inputName || p.id;
    const checkbox = h('input', {
      type: 'checkbox',
      id: `sel-${p.id}`,
      'data-testid': 'pair-select',
      checked: state.selected.has(p.id),
      onchange: (e) => {
        if (e.target.checked) state.selected.add(p.id);
        else state.selected.delete(p.id);
        updateSelection();
      },
    });
    const image = p.outputUrl || p.inputUrl;
    const picture = image
      ? h('img', { src: image, alt: p.outputUrl ? `Result of ${name}` : `Source ${name}`, loading: 'lazy', 'data-testid': 'pair-image' })
      : h('span', { class: 'noimage', text: 'no image' });
    const actions = h('div', { class: 'card-actions' });
    if (p.outputUrl) {
      actions.append(h('button', { type: 'button', 'data-testid': 'pair-compare', onclick: () => openCompare(p) }, 'Compare'));
    }
    const archived = p.archived || (state.folder && state.folder.status === 'archived');
    actions.append(h('button', {
      type: 'button',
      'data-testid': 'pair-approve',
      disabled: archived || (!p.outputUrl && !p.approved),
      title: archived ? 'The workspace is archived' : (p.outputUrl || p.approved ? null : 'Nothing to approve before a result exists'),
      onclick: (e) => approvePairs([p.id], !p.approved, e.currentTarget),
    }, p.approved ? 'Unapprove' : 'Approve'));
    if (!archived) {
      actions.append(h('button', { type: 'button', class: 'quiet', 'data-testid': 'pair-run', onclick: (e) => runSingle(p, e.currentTarget) }, 'Run'));
    }
    if (p.outputUrl) {
      actions.append(h('a', {
        class: 'button quiet',
        href: p.outputUrl,
        download: p.outputName || `${p.id}_result`,
        'data-testid': 'pair-download',
      }, 'Download'));
    }
    const live = state.watch && state.watch.byPair.get(p.id);
    return h('li', { class: `card s-${p.status}`, 'data-testid': 'pair-card', 'data-pair-id': p.id, 'data-status': p.status },
      h('div', { class: 'pic' }, picture),
      h('div', { class: 'card-body' },
        h('div', { class: 'card-title' }, checkbox, h('label', { for: `sel-${p.id}`, text: name, title: name })),
        h('p', { class: 'meta' }, badge(p.status, 'pair-status'),
          live ? h('span', { class: 'hint', text: ` · ${itemLabel(live)}` }) : null),
        actions));
  }

  function updateSelection() {
    const n = state.selected.size;
    const archived = Boolean(state.folder && state.folder.status === 'archived');
    $('selection-count').textContent = n ? `${n} selected` : '';
    $('approve-selected').disabled = n === 0 || archived;
    $('unapprove-selected').disabled = n === 0 || archived;
    $('delete-selected').disabled = n === 0;
    const all = $('select-all');
    all.checked = n > 0 && n === state.pairs.length;
    all.indeterminate = n > 0 && n < state.pairs.length;
  }

  function selectAll(event) {
    state.selected.clear();
    if (event.target.checked) for (const p of state.pairs) state.selected.add(p.id);
    renderPairs();
  }

  async function approvePairs(ids, approved, button) {
    if (!state.sku || !ids.length) return;
    await act(approved ? 'Approving' : 'Withdrawing the approval', button, async () => {
      if (ids.length === 1) {
        await post(`${STUDIO}/review/approve`, { sku: state.sku, pairId: ids[0], approved });
      } else {
        await post(`${STUDIO}/review/batch`, { sku: state.sku, pairIds: ids, approved });
      }
      notice(`${ids.length} pair${ids.length === 1 ? '' : 's'} ${approved ? 'approved' : 'no longer approved'}.`);
      if (ids.length > 1) state.selected.clear();
      await refreshFolder();
    });
  }

  async function setArchived(archived) {
    if (!state.sku) return;
    const button = archived ? $('ws-archive') : $('ws-activate');
    await act(archived ? 'Archiving' : 'Activating', button, async () => {
      await post(`${STUDIO}/archive${archived ? '' : '/activate'}`, { sku: state.sku });
      notice(`Workspace ${state.sku} ${archived ? 'archived' : 'active again'}.`);
      await refreshFolder();
      await loadFolders();
      (archived ? $('ws-activate') : $('ws-archive')).focus();
    });
  }

  async function deleteSelected() {
    const ids = Array.from(state.selected);
    if (!ids.length) return;
    const dialog = $('confirm-dialog');
    $('confirm-text').textContent = `Delete files of ${ids.length} selected pair${ids.length === 1 ? '' : 's'} in ${state.sku}? This cannot be undone.`;
    show($('confirm-options'), true);
    const answer = await new Promise((resolve) => {
      dialog.addEventListener('close', () => resolve(dialog.returnValue), { once: true });
      dialog.returnValue = 'cancel';
      dialog.showModal();
      $('confirm-cancel').focus();
    });
    if (answer !== 'ok') return;
    const body = {
      sku: state.sku,
      pairIds: ids,
      results: $('delete-results').checked,
      sources: $('delete-sources').checked,
      removePairs: $('delete-pairs').checked,
    };
    await act('Deleting files', $('delete-selected'), async () => {
      const r = await post(`${STUDIO}/files/delete`, body);
      notice(`${r.deleted} file${r.deleted === 1 ? '' : 's'} deleted, ${r.kept} kept (still used elsewhere)${r.removedPairIds && r.removedPairIds.length ? `, ${r.removedPairIds.length} pairs removed` : ''}.`);
      await refreshFolder();
    });
  }

  // ---------------------------------------------------------------- before / after

  function openCompare(p) {
    state.comparePair = p;
    const name = p.inputName || p.id;
    $('compare-title').textContent = `Before / after: ${name}`;
    const before = $('compare-before');
    const after = $('compare-after');
    before.src = p.inputUrl || '';
    before.alt = `Source ${name}`;
    after.src = p.outputUrl || '';
    after.alt = `Result of ${name}`;
    const link = $('compare-download');
    link.href = p.outputUrl || '#';
    link.setAttribute('download', p.outputName || `${p.id}_result`);
    $('compare-approve').textContent = p.approved ? 'Unapprove' : 'Approve';
    const range = $('compare-range');
    range.value = '50';
    moveDivider();
    $('compare-dialog').showModal();
    range.focus();
  }

  function moveDivider() {
    const range = $('compare-range');
    const at = Number(range.value);
    // The result shows right of the divider: clip its left part away.
    $('compare-after-clip').style.setProperty('clip-path', `inset(0 0 0 ${at}%)`);
    $('compare-divider').style.setProperty('left', `${at}%`);
    range.setAttribute('aria-valuetext', `${at}% source, ${100 - at}% result`);
  }

  function closeCompare() {
    $('compare-dialog').close();
  }

  // ---------------------------------------------------------------- prompt groups

  async function loadGroups(selectId) {
    try {
      const answer = await get(`${STUDIO}/prompt-groups`);
      state.groups = answer.groups || [];
      renderGroups(selectId);
    } catch (err) {
      showError('Listing the prompt groups', err);
    }
  }

  function renderGroups(selectId) {
    const select = $('group-select');
    const keep = selectId || select.value;
    select.replaceChildren(...state.groups.map((g) => h('option', { value: g.id }, `${g.name} (v${g.version})${g.isActive ? ' · active' : ''}`)));
    if (!state.groups.length) select.append(h('option', { value: '' }, 'No prompt group yet'));
    const active = state.groups.find((g) => g.isActive);
    if (keep && state.groups.some((g) => g.id === keep)) select.value = keep;
    else if (active) select.value = active.id;
    $('group-active').textContent = active
      ? `Active: ${active.name} (v${active.version}); batch and single jobs use its templates.`
      : 'No active group: batch and single jobs need one (or run a custom prompt).';
    $('group-activate').disabled = !state.groups.length;
    renderTemplates();
  }

  function renderTemplates() {
    const group = state.groups.find((g) => g.id === $('group-select').value);
    const list = $('group-templates');
    list.replaceChildren(...(group ? group.templates : []).map((t) => h('li', {}, h('strong', { text: t.name }), ': ', t.content)));
  }

  async function activateGroup() {
    const id = $('group-select').value;
    if (!id) return;
    await act('Choosing the active prompt group', $('group-activate'), async () => {
      const answer = await post(`${STUDIO}/prompt-groups/active`, { groupId: id });
      notice(`Prompt group ${answer.group ? answer.group.name : ''} is active.`);
      await loadGroups(id);
    });
  }

  function addTemplateRow(name = '', content = '') {
    const rows = $('template-rows');
    const n = rows.children.length + 1;
    const row = h('fieldset', { class: 'template-row', 'data-testid': 'template-row' },
      h('legend', { text: `Template ${n}` }),
      h('label', { for: `tpl-name-${n}`, text: 'Name' }),
      h('input', { id: `tpl-name-${n}`, value: name, 'data-testid': 'template-name' }),
      h('label', { for: `tpl-content-${n}`, text: 'Text' }),
      h('textarea', { id: `tpl-content-${n}`, rows: '2', 'data-testid': 'template-content' }, content),
      h('button', { type: 'button', class: 'quiet', onclick: () => { row.remove(); } }, `Remove template ${n}`));
    rows.append(row);
    return row;
  }

  async function saveGroup(event) {
    event.preventDefault();
    const name = $('group-name').value.trim();
    const templates = Array.from(document.querySelectorAll('[data-testid="template-row"]'))
      .map((row) => ({
        name: row.querySelector('[data-testid="template-name"]').value.trim(),
        content: row.querySelector('[data-testid="template-content"]').value.trim(),
      }))
      .filter((t) => t.name || t.content);
    if (!name || !templates.length) {
      showError('Saving the prompt group', new ConsoleError('give the group a name and at least one template'));
      return;
    }
    await act('Saving the prompt group', $('group-save'), async () => {
      const answer = await post(`${STUDIO}/prompt-groups`, { name, templates });
      notice(`Prompt group ${answer.group.name} saved as version ${answer.group.version}; choose “Make active” to use it.`);
      $('group-name').value = '';
      $('group-new').open = false;
      $('template-rows').replaceChildren();
      addTemplateRow();
      await loadGroups(answer.group.id);
      $('group-select').focus();
    });
  }

  // ---------------------------------------------------------------- runs and jobs

  function mode() {
    const checked = document.querySelector('input[name="mode"]:checked');
    return checked ? checked.value : 'batch';
  }

  function renderRunMode() {
    const m = mode();
    show($('run-pair-row'), m !== 'batch');
    show($('run-prompt-row'), m === 'custom');
  }

  function renderRunPairs() {
    const select = $('run-pair');
    const keep = select.value;
    const options = [];
    if (mode() === 'custom') options.push(h('option', { value: '' }, 'Every pair without a result'));
    for (const p of state.pairs) options.push(h('option', { value: p.id }, `${p.inputName || p.id} (${p.status})`));
    select.replaceChildren(...options);
    if (keep && Array.from(select.options).some((o) => o.value === keep)) select.value = keep;
  }

  async function runJob(event) {
    event.preventDefault();
    if (!state.sku) return;
    const m = mode();
    const body = { sku: state.sku, mode: m };
    const pairId = $('run-pair').value;
    if (m === 'single') {
      if (!pairId) {
        showError('Running', new ConsoleError('choose the pair to run'));
        return;
      }
      body.pairId = pairId;
    }
    if (m === 'custom') {
      const prompt = $('run-prompt').value.trim();
      if (!prompt) {
        showError('Running', new ConsoleError('a custom job needs its prompt'));
        $('run-prompt').focus();
        return;
      }
      body.prompt = prompt;
      if (pairId) body.pairId = pairId;
    }
    await submitJob(body, $('run-submit'));
  }

  async function runSingle(p, button) {
    await submitJob({ sku: state.sku, mode: 'single', pairId: p.id }, button);
  }

  async function submitJob(body, button) {
    await act(`Running a ${body.mode} job`, button, async () => {
      const answer = await post(`${STUDIO}/jobs`, body, { 'Idempotency-Key': randomKey() });
      const job = answer.job;
      notice(`Job ${shortId(job.id)} submitted: ${job.total} image${job.total === 1 ? '' : 's'}.`);
      follow(job);
      await Promise.all([loadJobs(), refreshBalance()]);
    });
  }

  async function loadJobs() {
    if (!state.sku) return;
    try {
      const answer = await get(`${STUDIO}/jobs?sku=${encodeURIComponent(state.sku)}&limit=20`);
      state.jobs = answer.jobs || [];
      renderJobs();
    } catch (err) {
      showError('Listing the jobs', err);
    }
  }

  function renderJobs() {
    const rows = $('job-rows');
    rows.replaceChildren(...state.jobs.map((j) => h('tr', { 'data-testid': 'job-row', 'data-job-id': j.id, 'data-status': j.status },
      h('td', { text: when(j.createdAt) }),
      h('td', { text: j.mode }),
      h('td', {}, badge(j.status, 'job-row-status')),
      h('td', { text: `${j.progress}%` }),
      h('td', { text: `${j.completed} done, ${j.failed} failed of ${j.total}` }),
      h('td', { class: 'row-actions' },
        h('button', { type: 'button', class: 'quiet', 'data-testid': 'job-follow', onclick: () => follow(j) }, 'Progress'),
        h('button', { type: 'button', class: 'quiet', 'data-testid': 'job-logs', onclick: (e) => showLogs(j, e.currentTarget) }, 'Logs')))));
    if (!state.jobs.length) rows.append(h('tr', {}, h('td', { colspan: '6', class: 'empty', text: 'No job on this workspace yet.' })));
  }

  async function showLogs(job, button) {
    await act('Reading the job logs', button, async () => {
      const answer = await get(`${STUDIO}/job-logs/${encodeURIComponent(job.id)}`);
      const names = new Map((job.items || []).map((i) => [i.taskId, pairName(i.pairId)]));
      $('logs-title').textContent = `Logs of job ${shortId(job.id)} (${job.mode}, ${job.status})`;
      const lines = answer.logs || [];
      $('log-lines').replaceChildren(...lines.map((l) => h('li', { class: `log-${l.level}`, 'data-testid': 'log-line' },
        h('time', { text: when(l.time) }), ' ',
        h('span', { class: 'level', text: l.level }), ' ',
        l.taskId ? h('span', { class: 'hint', text: `[${names.get(l.taskId) || shortId(l.taskId)}] ` }) : null,
        l.message)));
      if (!lines.length) $('log-lines').append(h('li', { class: 'empty', text: 'No log line.' }));
      show($('logs'), true);
    });
  }

  function pairName(pairId) {
    const p = state.pairs.find((x) => x.id === pairId);
    return p ? (p.inputName || p.id) : (pairId ? shortId(pairId) : 'unknown pair');
  }

  // ---------------------------------------------------------------- live progress (SSE over fetch)

  const ITEM_STATE = {
    queued: 'queued', processing: 'processing', completed: 'done', failed: 'failed', cancelled: 'cancelled',
  };
  const TASK_STATE = {
    queued: 'queued', running: 'processing', retry_wait: 'retrying', succeeded: 'done', failed: 'failed', cancelled: 'cancelled',
  };

  function itemLabel(item) {
    if (item.state === 'processing') return `processing ${item.percent}%${item.stage ? ` (${item.stage})` : ''}`;
    if (item.state === 'failed' && item.error) return `failed: ${item.error.message || ''}${item.error.code ? ` (error ${item.error.code})` : ''}`;
    return item.state;
  }

  function resetProgress() {
    show($('progress-none'), true);
    show($('progress-body'), false);
    $('progress-items').replaceChildren();
  }

  function stopWatching() {
    if (state.watch) {
      state.watch.stopped = true;
      state.watch.controller.abort();
      state.watch = null;
    }
  }

  function follow(job) {
    stopWatching();
    const watch = {
      job,
      jobState: null,
      items: new Map(),
      byPair: new Map(),
      controller: new AbortController(),
      lastSequence: 0,
      stopped: false,
      refreshTimer: null,
    };
    for (const it of job.items || []) {
      const item = {
        index: it.index,
        taskId: it.taskId,
        pairId: it.pairId,
        state: ITEM_STATE[it.status] || it.status,
        percent: it.status === 'completed' ? 100 : (it.progress || 0),
        stage: '',
        error: it.error,
      };
      watch.items.set(it.taskId, item);
      if (it.pairId) watch.byPair.set(it.pairId, item);
    }
    state.watch = watch;
    show($('progress-none'), false);
    show($('progress-body'), true);
    $('progress-job').textContent = `Job ${shortId(job.id)} · ${job.mode} · ${job.total} image${job.total === 1 ? '' : 's'}`;
    setJobStatus(job.status);
    renderProgress();
    stream(watch);
  }

  function setJobStatus(status) {
    const el = $('job-status');
    el.textContent = status;
    el.className = `badge s-${status}`;
  }

  function renderProgress() {
    const watch = state.watch;
    if (!watch) return;
    const items = Array.from(watch.items.values()).sort((a, b) => a.index - b.index);
    $('progress-items').replaceChildren(...items.map((item) => {
      const pct = item.state === 'done' ? 100 : item.percent;
      const bar = h('progress', { max: '100', value: String(pct), 'aria-label': `Progress of ${pairName(item.pairId)}` });
      return h('li', { class: `item s-${item.state}`, 'data-testid': 'progress-item', 'data-state': item.state, 'data-task-id': item.taskId, 'data-pair-id': item.pairId || '' },
        h('span', { class: 'item-name', text: pairName(item.pairId) }),
        bar,
        h('span', { class: 'item-state', 'data-testid': 'progress-item-state', text: itemLabel(item) }));
    }));
    const total = items.length || 1;
    const sum = items.reduce((acc, i) => acc + (i.state === 'done' ? 100 : (['failed', 'cancelled'].includes(i.state) ? 100 : i.percent)), 0);
    $('job-progress').value = Math.round(sum / total);
  }

  function scheduleRefresh(watch) {
    if (watch.refreshTimer) return;
    watch.refreshTimer = setTimeout(() => {
      watch.refreshTimer = null;
      if (!watch.stopped) refreshFolder();
    }, 250);
  }

  function onEvent(watch, name, data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof event.sequence === 'number') watch.lastSequence = Math.max(watch.lastSequence, event.sequence);
    if (name === 'error') {
      const e = event.error || {};
      showError('The progress stream', new ConsoleError(e.message || 'the stream broke', { code: e.code, reason: e.reason }));
      return;
    }
    const item = event.task_id ? watch.items.get(event.task_id) : null;
    switch (name) {
      case 'task_state':
        if (item) {
          item.state = TASK_STATE[event.task_state] || event.task_state;
          if (item.state === 'done') item.percent = 100;
          if (item.state === 'processing' && item.percent >= 100) item.percent = 0;
          item.error = event.failure || null;
          if (item.state === 'done' || item.state === 'failed') scheduleRefresh(watch);
        }
        break;
      case 'progress':
        if (item && item.state !== 'done' && item.state !== 'failed' && item.state !== 'cancelled') {
          item.state = 'processing';
          item.percent = event.percent ?? item.percent;
          item.stage = event.stage || '';
        }
        break;
      case 'job_state':
        watch.jobState = event.job_state;
        setJobStatus(studioStatus(event.job_state));
        if (TERMINAL_JOB.has(event.job_state)) {
          if (event.failure) showError(`Job ${shortId(watch.job.id)}`, new ConsoleError(event.failure.message, { code: event.failure.code, reason: event.failure.reason }));
          finish(watch);
        }
        break;
      default:
        return;
    }
    renderProgress();
  }

  function studioStatus(jobState) {
    return {
      queued: 'queued', running: 'processing', succeeded: 'completed', partially_succeeded: 'completed', failed: 'failed', cancelled: 'cancelled',
    }[jobState] || jobState;
  }

  async function finish(watch) {
    if (watch.stopped) return;
    $('progress-stream').textContent = 'Finished.';
    await Promise.all([refreshFolder(), loadJobs(), refreshBalance(), loadFolders()]);
  }

  /** Reads `GET /v1/jobs/{id}/events` as a stream and parses Server-Sent Events; resumes with Last-Event-ID. */
  async function stream(watch) {
    const url = `/v1/jobs/${encodeURIComponent(watch.job.id)}/events`;
    let attempts = 0;
    while (!watch.stopped && !TERMINAL_JOB.has(watch.jobState)) {
      $('progress-stream').textContent = attempts ? `Reconnecting (attempt ${attempts + 1})…` : 'Following live…';
      const headers = { ...authHeaders(), Accept: 'text/event-stream' };
      if (watch.lastSequence) headers['Last-Event-ID'] = String(watch.lastSequence);
      try {
        const response = await fetch(url, { headers, signal: watch.controller.signal, cache: 'no-store' });
        if (!response.ok) {
          const text = await response.text();
          let json = null;
          try { json = JSON.parse(text); } catch { json = null; }
          throw errorFrom(response, json, text);
        }
        const seen = await readEvents(response.body, (name, data) => onEvent(watch, name, data));
        if (watch.stopped || TERMINAL_JOB.has(watch.jobState)) return;
        // The stream ended before the job did: reconnect after the last event seen, slower each
        // time nothing new came.
        attempts = seen ? 1 : attempts + 1;
        if (attempts > 5) throw new ConsoleError('the event stream keeps ending before the job does');
        await new Promise((resolve) => { setTimeout(resolve, 500 * attempts); });
      } catch (err) {
        if (watch.stopped || (err && err.name === 'AbortError')) return;
        if (err instanceof ConsoleError && err.status >= 400 && err.status < 500) {
          showError('Following the job', err);
          $('progress-stream').textContent = 'Not followed.';
          return;
        }
        attempts += 1;
        if (attempts > 5) {
          showError('Following the job', err);
          $('progress-stream').textContent = 'Lost the stream; use “Progress” in the jobs list to follow it again.';
          return;
        }
        await new Promise((resolve) => { setTimeout(resolve, 500 * attempts); });
      }
    }
  }

  async function readEvents(body, dispatch) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let name = '';
    let data = [];
    let seen = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        let line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length) {
            seen += 1;
            dispatch(name || 'message', data.join('\n'));
          }
          name = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'event') name = val;
        else if (field === 'data') data.push(val);
      }
    }
    return seen;
  }

  // ---------------------------------------------------------------- account, ledger, models

  async function loadAccount() {
    await Promise.all([loadAccountFacts(), loadLedger(true), loadModels()]);
  }

  async function loadAccountFacts() {
    try {
      const a = await get('/v1/account');
      renderBalance(a);
      const facts = [
        ['Account', a.external_id],
        ['Balance', `${a.balance} units`],
        ['Member', a.member ? `yes${a.membership_expires_at ? `, until ${when(a.membership_expires_at)}` : ''}` : 'no'],
        ['Active jobs', String(a.active_jobs)],
        ['Since', when(a.created_at)],
      ];
      $('account-facts').replaceChildren(...facts.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { 'data-testid': `fact-${k.toLowerCase().replace(/ /g, '-')}`, text: v })]));
    } catch (err) {
      showError('Reading the account', err);
    }
  }

  async function loadLedger(first) {
    if (first) state.ledgerToken = null;
    const token = state.ledgerToken;
    try {
      const answer = await get(`/v1/account/ledger?page_size=20${token ? `&page_token=${encodeURIComponent(token)}` : ''}`);
      const rows = (answer.entries || []).map((e) => {
        const job = e.job_id ?? e.jobId;
        return h('tr', { 'data-testid': 'ledger-row', 'data-kind': e.kind },
          h('td', { text: when(e.created_at ?? e.createdAt) }),
          h('td', { text: e.kind }),
          h('td', { class: 'num', text: e.amount > 0 ? `+${e.amount}` : String(e.amount) }),
          h('td', { text: e.reason || '' }),
          h('td', { text: job ? shortId(job) : '', title: job || null }));
      });
      if (first) $('ledger-rows').replaceChildren(...rows);
      else $('ledger-rows').append(...rows);
      if (first && !rows.length) $('ledger-rows').append(h('tr', {}, h('td', { colspan: '5', class: 'empty', text: 'No entry yet.' })));
      state.ledgerToken = answer.next_page_token || answer.nextPageToken || null;
      show($('ledger-more'), Boolean(state.ledgerToken));
    } catch (err) {
      showError('Reading the ledger', err);
    }
  }

  async function loadModels() {
    try {
      const answer = await get('/v1/models');
      const models = answer.models || [];
      $('model-rows').replaceChildren(...models.map((m) => h('tr', { 'data-testid': 'model-row' },
        h('td', { text: m.id }), h('td', { text: m.provider }), h('td', { text: (m.kinds || []).join(', ') }))));
      show($('models-empty'), !models.some((m) => (m.kinds || []).includes('edit')));
    } catch (err) {
      showError('Listing the models', err);
    }
  }

  // ---------------------------------------------------------------- wiring

  function wire() {
    $('signin-form').addEventListener('submit', signIn);
    $('signout').addEventListener('click', signOut);
    $('error-dismiss').addEventListener('click', clearError);
    for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => setView(tab.dataset.view));
    $('folder-filter').addEventListener('change', loadFolders);
    $('folders-refresh').addEventListener('click', loadFolders);
    $('create-folder-form').addEventListener('submit', createFolder);
    $('add-files-button').addEventListener('click', () => $('add-files').click());
    $('add-files').addEventListener('change', addFiles);
    $('ws-archive').addEventListener('click', () => setArchived(true));
    $('ws-activate').addEventListener('click', () => setArchived(false));
    $('select-all').addEventListener('change', selectAll);
    $('approve-selected').addEventListener('click', (e) => approvePairs(Array.from(state.selected), true, e.currentTarget));
    $('unapprove-selected').addEventListener('click', (e) => approvePairs(Array.from(state.selected), false, e.currentTarget));
    $('delete-selected').addEventListener('click', deleteSelected);
    $('run-form').addEventListener('submit', runJob);
    for (const radio of document.querySelectorAll('input[name="mode"]')) {
      radio.addEventListener('change', () => {
        $('run-pair').value = '';
        renderRunMode();
        renderRunPairs();
      });
    }
    $('group-select').addEventListener('change', renderTemplates);
    $('group-activate').addEventListener('click', activateGroup);
    $('template-add').addEventListener('click', () => { addTemplateRow().querySelector('input').focus(); });
    $('group-form').addEventListener('submit', saveGroup);
    $('jobs-refresh').addEventListener('click', loadJobs);
    $('compare-range').addEventListener('input', moveDivider);
    // Dragging over the pictures moves the divider too (the range below is the keyboard's way).
    const stage = $('compare-stage');
    const dragTo = (e) => {
      const box = stage.getBoundingClientRect();
      if (!box.width) return;
      const at = Math.round(Math.min(100, Math.max(0, ((e.clientX - box.left) / box.width) * 100)));
      $('compare-range').value = String(at);
      moveDivider();
    };
    stage.addEventListener('pointerdown', (e) => {
      stage.setPointerCapture(e.pointerId);
      dragTo(e);
    });
    stage.addEventListener('pointermove', (e) => {
      if (stage.hasPointerCapture(e.pointerId)) dragTo(e);
    });
    $('compare-close').addEventListener('click', closeCompare);
    $('compare-approve').addEventListener('click', async (e) => {
      const p = state.comparePair;
      if (!p) return;
      await approvePairs([p.id], !p.approved, e.currentTarget);
      const fresh = state.pairs.find((x) => x.id === p.id);
      if (fresh) {
        state.comparePair = fresh;
        $('compare-approve').textContent = fresh.approved ? 'Unapprove' : 'Approve';
      }
    });
    $('account-refresh').addEventListener('click', loadAccount);
    $('ledger-more').addEventListener('click', () => loadLedger(false));
    addTemplateRow();
    renderRunMode();
  }

  async function resume() {
    const key = sessionStorage.getItem(STORE_KEY);
    const account = sessionStorage.getItem(STORE_ACCOUNT);
    if (!key || !account) {
      $('signin-key').focus();
      return;
    }
    state.key = key;
    state.account = account;
    try {
      enter(await get('/v1/account'));
    } catch (err) {
      state.key = '';
      state.account = '';
      sessionStorage.removeItem(STORE_KEY);
      $('signin-account').value = account;
      const error = $('signin-error');
      error.textContent = `The saved sign-in no longer works: ${describe(err)}`;
      show(error, true);
    }
  }

  wire();
  resume();
})();
