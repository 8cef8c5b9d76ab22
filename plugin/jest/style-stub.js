// Style sheets that Grafana's components import; jsdom needs none of them.
module.exports = {};
