(function () {
  var box = document.getElementById('canvas'), svg = box && box.querySelector('svg'), section = document.getElementById('graph');
  if (!svg) return;
  var vb = svg.viewBox.baseVal, w = vb.width || 800, h = vb.height || 600, scale = 1;
  function zoom(s) {
    scale = Math.max(0.05, Math.min(8, s));
    svg.setAttribute('width', Math.round(w * scale));
    svg.setAttribute('height', Math.round(h * scale));
    document.getElementById('zoom').textContent = Math.round(scale * 100) + '%';
  }
  function fit() { return Math.min(1, (box.clientWidth - 4) / w); }
  zoom(Math.max(fit(), 0.35));
  document.querySelectorAll('[data-zoom]').forEach(function (b) {
    b.addEventListener('click', function () {
      var z = b.getAttribute('data-zoom');
      zoom(z === 'in' ? scale * 1.25 : z === 'out' ? scale / 1.25 : z === 'fit' ? fit() : 1);
    });
  });
  box.addEventListener('wheel', function (e) {
    if (!e.ctrlKey) return;
    e.preventDefault();
    zoom(scale * (e.deltaY < 0 ? 1.15 : 1 / 1.15));
  }, { passive: false });
  var drag = null;
  box.addEventListener('pointerdown', function (e) {
    if (e.target.closest('a')) return;
    drag = { x: e.clientX, y: e.clientY, l: box.scrollLeft, t: box.scrollTop };
  });
  window.addEventListener('pointermove', function (e) {
    if (!drag) return;
    box.scrollLeft = drag.l - (e.clientX - drag.x);
    box.scrollTop = drag.t - (e.clientY - drag.y);
  });
  window.addEventListener('pointerup', function () { drag = null; });
  // What the browser drew, for tests and for anyone checking the page.
  var r = svg.getBoundingClientRect();
  section.setAttribute('data-rendered-nodes', svg.querySelectorAll('g.node').length);
  section.setAttribute('data-rendered-violating', svg.querySelectorAll('g.edge.violating').length);
  section.setAttribute('data-rendered-size', Math.round(r.width) + 'x' + Math.round(r.height));
  section.setAttribute('data-natural-size', Math.round(w) + 'x' + Math.round(h));
})();
