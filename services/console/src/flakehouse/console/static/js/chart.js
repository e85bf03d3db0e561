// Draws charts with ECharts, loaded on first use from the console itself (/static/vendor):
// pages that never chart never pay for its megabyte.
let loading = null;

export function loadECharts() {
  if (window.echarts) return Promise.resolve(window.echarts);
  loading ??= new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = '/static/vendor/echarts.min.js';
    script.onload = () => resolve(window.echarts);
    script.onerror = () => {
      loading = null;
      reject(new Error('the chart library did not load'));
    };
    document.head.append(script);
  });
  return loading;
}

// Draws `option` in `container` (replacing what was there); `summary` is the text alternative.
export async function drawChart(container, option, summary) {
  container.setAttribute('role', 'img');
  container.setAttribute('aria-label', summary);
  const echarts = await loadECharts();
  const dark = window.matchMedia?.('(prefers-color-scheme: dark)').matches;
  echarts.getInstanceByDom(container)?.dispose();
  const chart = echarts.init(container, dark ? 'dark' : null, { renderer: 'svg' });
  chart.setOption(dark ? { backgroundColor: 'transparent', ...option } : option);
  container.setAttribute('aria-label', summary); // ECharts' aria writes its own; keep ours
  observeSize(container, chart);
  return chart;
}

export function clearChart(container) {
  window.echarts?.getInstanceByDom(container)?.dispose();
  container.replaceChildren();
  container.removeAttribute('aria-label');
}

const observed = new WeakMap();
function observeSize(container, chart) {
  observed.get(container)?.disconnect();
  const observer = new ResizeObserver(() => chart.isDisposed() || chart.resize());
  observer.observe(container);
  observed.set(container, observer);
}
