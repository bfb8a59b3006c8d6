// uservlm console page: renders what the server pushes on /ws, sends questions, privacy
// switches and forget requests to /api. Plain JavaScript (no build step), written for old browsers too (Pepper's
// tablet): no modules, no optional chaining. Text from the robot is always set as textContent.
(function () {
  'use strict';

  var ATTRIBUTE_NAMES = { age_group: 'age', gender: 'gender', ethnicity: 'ethnicity', emotion: 'emotion' };
  var state = { people: [], conversation: [], not_asked: {}, health: { nodes: [], robot: {} }, privacy: null, camera: {} };
  // Why the speech node did not ask what it heard (Transcript.dropped), as the page says it.
  var NOT_ASKED = {
    robot_speaking: 'while the robot spoke', asr_busy: 'while recognition was busy',
    empty: 'with nothing recognised', noise: 'noise', low_confidence: 'low confidence', too_short: 'too short'
  };
  var clockOffset = 0; // local time - server time, seconds
  var framePending = false;

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function serverNow() { return Date.now() / 1000 - clockOffset; }

  // -- the WebSocket

  function connect() {
    var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    var ws = new WebSocket(scheme + location.host + '/ws');
    ws.binaryType = 'blob';
    ws.onopen = function () { setBadge($('link'), 'ok', 'live'); };
    ws.onclose = function () {
      setBadge($('link'), 'error', 'disconnected: retrying');
      setTimeout(connect, 2000);
    };
    ws.onmessage = function (event) {
      if (typeof event.data === 'string') { apply(JSON.parse(event.data)); } else { showFrame(event.data); }
    };
  }

  function apply(message) {
    clockOffset = Date.now() / 1000 - message.time;
    if (message.people) { state.people = message.people; renderPeople(); renderTargets(); }
    if (message.conversation) { state.conversation = message.conversation; renderConversation(); }
    if (message.not_asked) { state.not_asked = message.not_asked; renderNotAsked(); }
    if (message.health) { state.health = message.health; renderHealth(); }
    if (message.privacy) { state.privacy = message.privacy; renderPrivacy(); }
    if (message.camera) { state.camera = message.camera; renderCameraNote(); }
  }

  function setBadge(node, kind, text) { node.className = 'badge ' + kind; node.textContent = text; }

  // -- camera: the newest JPEG (the server draws the faces, boxes and labels on it)

  function showFrame(blob) {
    if (framePending) { return; } // still decoding the previous one: skip this frame
    framePending = true;
    var url = URL.createObjectURL(blob);
    var image = new Image();
    image.onload = function () {
      URL.revokeObjectURL(url);
      framePending = false;
      var canvas = $('camera');
      if (canvas.width !== image.naturalWidth || canvas.height !== image.naturalHeight) {
        canvas.width = image.naturalWidth;
        canvas.height = image.naturalHeight;
      }
      canvas.getContext('2d').drawImage(image, 0, 0);
    };
    image.onerror = function () { URL.revokeObjectURL(url); framePending = false; };
    image.src = url;
  }

  function renderCameraNote() {
    var camera = state.camera;
    var text = '';
    if (!camera.enabled) { text = 'camera view off (console parameter camera.enabled)'; }
    else if (!camera.streaming) { text = 'waiting for camera frames on ' + (camera.topic || 'the camera topic'); }
    else { text = camera.fps + ' fps to this page (at most ' + camera.max_fps + ')'; }
    $('camera-note').textContent = text;
  }

  // -- people

  // A card per person, kept across updates (only its body is rebuilt) so that its Forget
  // button is not replaced under the pointer while profiles stream in.
  var cards = {};

  function personCard(personId) {
    if (cards[personId]) { return cards[personId]; }
    var card = el('article', 'person');
    card.setAttribute('data-person', personId);
    var body = el('div');
    card.appendChild(body);
    var forget = el('button', 'forget', 'Forget');
    forget.type = 'button';
    forget.title = 'erase what the robot remembers of ' + personId + ' (face, profile, visits)';
    forget.addEventListener('click', function () { forgetPersons(personId); });
    card.appendChild(forget);
    cards[personId] = { card: card, body: body };
    return cards[personId];
  }

  function renderPeople() {
    var box = $('people');
    var shown = {};
    state.people.forEach(function (person) {
      shown[person.person_id] = true;
      var entry = personCard(person.person_id);
      entry.card.className = 'person' + (person.engaged ? ' engaged' : '');
      entry.card.setAttribute('data-track', person.track_id);
      entry.body.textContent = '';
      renderPerson(entry.body, person);
      box.appendChild(entry.card); // (re)placed in the server's order
    });
    Object.keys(cards).forEach(function (personId) {
      if (!shown[personId]) { box.removeChild(cards[personId].card); delete cards[personId]; }
    });
    var empty = box.querySelector('p.note');
    if (state.people.length && empty) { box.removeChild(empty); }
    if (!state.people.length && !empty) { box.appendChild(el('p', 'note', 'nobody in view')); }
    updateSeen();
  }

  function renderPerson(body, person) {
    var title = el('h3');
    title.appendChild(el('span', 'person-id', person.person_id));
    title.appendChild(el('span', 'track', '#' + person.track_id));
    if (person.anonymous) { title.appendChild(el('span', 'tag anonymous', 'anonymous')); }
    title.appendChild(el('span', 'tag visits', 'visit ' + person.visits));
    if (person.engaged) { title.appendChild(el('span', 'tag engaged', 'ENGAGED')); }
    title.appendChild(el('span', 'tag', 'engagement ' + person.engagement.toFixed(2) + ' (' + person.engagement_state + ')'));
    body.appendChild(title);
    if (person.profile_text) { body.appendChild(el('p', 'profile-text', person.profile_text)); }
    var table = el('table');
    person.attributes.forEach(function (a) {
      var row = el('tr');
      row.setAttribute('data-attribute', a.name);
      row.setAttribute('data-reason', a.known ? '' : a.reason);
      row.appendChild(el('th', null, ATTRIBUTE_NAMES[a.name] || a.name));
      var label = el('td', a.known ? 'label' : 'label unknown', a.known ? a.label : 'unknown');
      if (!a.known) { label.appendChild(document.createTextNode(' ')); label.appendChild(el('span', 'reason ' + a.reason, a.reason)); }
      row.appendChild(label);
      var confidence = el('td');
      if (a.reason !== 'disabled' && a.reason !== 'not_supported') {
        var meter = el('meter');
        meter.min = 0; meter.max = 1; meter.value = a.confidence;
        confidence.appendChild(meter);
        confidence.appendChild(document.createTextNode(' ' + a.confidence.toFixed(2)));
      }
      row.appendChild(confidence);
      table.appendChild(row);
    });
    body.appendChild(table);
    var meta = [];
    if (person.age_years !== null) { meta.push('age ~' + Math.round(person.age_years) + ' y'); }
    meta.push(person.observations + ' observations', 'in view ' + person.seconds_in_view + ' s');
    var line = el('p', 'meta', meta.join(' - ') + ' - last seen ');
    var seen = el('span', 'seen');
    seen.setAttribute('data-seen', person.seen);
    line.appendChild(seen);
    line.appendChild(document.createTextNode(' - ' + person.model_id));
    body.appendChild(line);
  }

  function updateSeen() {
    var now = serverNow();
    Object.keys(cards).forEach(function (personId) {
      var card = cards[personId].card;
      var seen = card.querySelector('.seen');
      var ago = Math.max(0, now - Number(seen.getAttribute('data-seen')));
      seen.textContent = ago < 1 ? 'now' : Math.round(ago) + ' s ago';
      // out of view for a while (it leaves the list at people.expiry_s): grey it out
      card.className = card.className.replace(/ gone/g, '') + (ago >= 2 ? ' gone' : '');
    });
  }

  function renderTargets() {
    var select = $('ask-target');
    var chosen = select.value;
    while (select.options.length > 1) { select.remove(1); }
    state.people.forEach(function (person) {
      var option = el('option', null, person.person_id + ' #' + person.track_id + (person.engaged ? ' (engaged)' : ''));
      option.value = String(person.track_id);
      select.appendChild(option);
    });
    select.value = chosen;
    if (select.value !== chosen) { select.value = '0'; }
  }

  // -- conversation

  function renderConversation() {
    var list = $('conversation');
    var atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 20;
    list.textContent = '';
    state.conversation.forEach(function (x) {
      var item = el('li');
      item.setAttribute('data-request', x.key);
      item.setAttribute('data-status', x.status);
      var who = [(x.source || 'graph') + ', for ' + x.answer_for];
      item.appendChild(el('div', 'who', who.join(' ')));
      if (x.heard) {
        var heard = 'heard: "' + x.heard + '"' + (x.heard_confidence !== null ? ' (' + x.heard_confidence.toFixed(2) + ')' : '');
        if (x.dropped) { heard += ' - not asked: ' + (NOT_ASKED[x.dropped] || x.dropped); }
        item.appendChild(el('div', 'heard', heard));
      }
      if (x.question && !x.heard) { item.appendChild(el('div', 'question', x.question)); }
      var text = x.final ? x.text : (x.partial || x.early);
      if (x.error) {
        item.appendChild(el('div', 'answer error', 'error: ' + x.error));
      } else if (text || (!x.final && x.question && !x.dropped)) { // nothing asked: no answer bar
        item.appendChild(el('div', 'answer' + (x.final ? '' : ' streaming'), text));
      }
      if (x.final) {
        var details = el('div', 'details');
        var facts = [];
        if (x.responder) { facts.push('responder ' + x.responder); }
        if (x.gesture) { facts.push('gesture ' + x.gesture); }
        if (x.sentiment) { facts.push(x.sentiment); }
        if (x.mode) { facts.push(x.mode); }
        if (x.speech) { facts.push('robot: ' + x.speech); }
        details.appendChild(el('div', null, facts.join(' - ')));
        var timings = el('div', 'timings');
        x.timings.forEach(function (t) { timings.appendChild(el('span', 'timing', t.stage + ' ' + t.ms + ' ms')); });
        details.appendChild(timings);
        item.appendChild(details);
      }
      list.appendChild(item);
    });
    if (atBottom) { list.scrollTop = list.scrollHeight; }
  }

  // The utterances not asked with nothing worth a line (the robot hearing itself): one line.
  function renderNotAsked() {
    var counts = state.not_asked;
    var last = 0;
    var parts = Object.keys(counts).map(function (reason) {
      last = Math.max(last, counts[reason].last);
      return counts[reason].count + ' ' + (NOT_ASKED[reason] || reason);
    });
    var ago = Math.max(0, serverNow() - last);
    $('not-asked').textContent = parts.length ?
      'heard, not asked: ' + parts.join(', ') + ' (last ' + (ago < 1 ? 'now' : Math.round(ago) + ' s ago') + ')' : '';
  }

  function post(path, body) {
    return fetch(path, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body)
    }).then(function (response) {
      return response.text().then(function (text) {
        var data = {};
        try { data = JSON.parse(text); } catch (e) { data = { error: text.trim() || response.statusText }; }
        if (!response.ok) { throw new Error(data.error || response.statusText); }
        return data;
      });
    });
  }

  $('ask').addEventListener('submit', function (event) {
    event.preventDefault();
    var input = $('question');
    $('ask-error').textContent = '';
    post('/api/ask', { question: input.value, track_id: Number($('ask-target').value) })
      .then(function () { input.value = ''; })
      .catch(function (error) { $('ask-error').textContent = error.message; });
  });

  // -- forgetting persons (the profiler erases their face embeddings, profile and visits)

  function forgetPersons(personId) {
    var everyone = !personId;
    if (everyone && !window.confirm('Forget everyone the robot remembers?')) { return; }
    var note = $('forget-result');
    note.className = 'note';
    note.textContent = 'forgetting ' + (everyone ? 'everyone' : personId) + '...';
    post(everyone ? '/api/forget_everyone' : '/api/forget', everyone ? {} : { person_id: personId })
      .then(function (answer) {
        note.textContent = (everyone ? 'everyone' : personId) + ': ' + (answer.message || ('forgot ' + answer.forgotten + ' person(s)'));
      })
      .catch(function (error) { note.className = 'error'; note.textContent = error.message; });
  }

  $('forget-everyone').addEventListener('click', function () { forgetPersons(''); });

  // -- privacy switches

  function renderPrivacy() {
    var privacy = state.privacy;
    var box = $('privacy');
    box.textContent = '';
    Object.keys(privacy.attributes).forEach(function (name) {
      var entry = privacy.attributes[name];
      var label = el('label', 'switch');
      var input = el('input');
      input.type = 'checkbox';
      input.id = 'enable-' + name;
      input.setAttribute('data-attribute', name);
      input.checked = entry.enabled !== false;
      input.disabled = entry.pending || entry.enabled === null || !privacy.node.available;
      input.addEventListener('change', function () { setPrivacy(name, input.checked); });
      label.appendChild(input);
      label.appendChild(document.createTextNode(ATTRIBUTE_NAMES[name] || name));
      if (entry.pending) { label.appendChild(el('span', 'note', '(setting)')); }
      box.appendChild(label);
    });
    var errors = Object.keys(privacy.attributes)
      .filter(function (n) { return privacy.attributes[n].error; })
      .map(function (n) { return n + ': ' + privacy.attributes[n].error; });
    if (!privacy.node.available) { errors.unshift(privacy.node.error || ('waiting for ' + privacy.node.name)); }
    $('privacy-error').textContent = errors.join('; ');
  }

  function setPrivacy(name, enabled) {
    post('/api/privacy', { attribute: name, enabled: enabled })
      .catch(function (error) { $('privacy-error').textContent = name + ': ' + error.message; });
  }

  // -- health

  function renderHealth() {
    var robot = state.health.robot;
    var kind = robot.state === 'connected' ? 'ok' : (robot.state === 'unknown' ? '' : 'error');
    setBadge($('robot'), kind, 'robot: ' + robot.state.replace('_', ' '));
    $('robot').title = robot.detail || '';
    var body = $('health').tBodies[0];
    body.textContent = '';
    state.health.nodes.forEach(function (node) {
      var row = el('tr');
      row.setAttribute('data-node', node.name);
      row.appendChild(el('td', null, node.name));
      row.appendChild(el('td', 'level ' + node.level, node.level));
      row.appendChild(el('td', null, node.message));
      var counters = Object.keys(node.values).map(function (k) { return k + '=' + node.values[k]; });
      row.appendChild(el('td', 'counters', counters.join('  ')));
      body.appendChild(row);
    });
  }

  setInterval(function () { updateSeen(); renderNotAsked(); }, 1000);
  connect();
})();
