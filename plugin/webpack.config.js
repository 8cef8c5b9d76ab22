// Builds dist/module.js the way Grafana loads a plugin: an AMD module
// (Grafana's SystemJS loads it with its AMD extra) whose `plugin` export
// is the DataSourcePlugin. React, @grafana/data, @grafana/ui,
// @grafana/runtime and the other libraries Grafana shares with its
// plugins are externals, resolved from Grafana's own copies at load
// time; the rest is bundled. Laid out as @grafana/create-plugin's
// .config/webpack does, reduced to what this plugin uses.
const path = require('path');
const CopyWebpackPlugin = require('copy-webpack-plugin');
const pluginJson = require('./src/plugin.json');
const { version } = require('./package.json');

module.exports = (env = {}) => ({
  mode: env.production ? 'production' : 'development',
  devtool: env.production ? 'source-map' : 'eval-source-map',
  context: path.join(__dirname, 'src'),
  entry: { module: './module.ts' },
  externals: [
    'lodash',
    'moment',
    'emotion',
    '@emotion/react',
    '@emotion/css',
    'react',
    'react-dom',
    'rxjs',
    'react-router',
    'react-router-dom',
    /^@grafana\/ui/i,
    /^@grafana\/runtime/i,
    /^@grafana\/data/i,
  ],
  module: {
    rules: [
      {
        exclude: /node_modules/,
        test: /\.[tj]sx?$/,
        use: {
          loader: 'swc-loader',
          options: {
            jsc: {
              target: 'es2015',
              parser: { syntax: 'typescript', tsx: true },
              transform: { react: { runtime: 'classic' } },
            },
          },
        },
      },
      { test: /\.svg$/, type: 'asset/resource', generator: { filename: 'img/[name][ext]' } },
    ],
  },
  output: {
    clean: { keep: /gpx_/ },
    filename: '[name].js',
    library: { type: 'amd' },
    path: path.join(__dirname, 'dist'),
    publicPath: `public/plugins/${pluginJson.id}/`,
    uniqueName: pluginJson.id,
  },
  plugins: [
    new CopyWebpackPlugin({
      patterns: [
        {
          from: 'plugin.json',
          to: '.',
          transform: (content) =>
            content
              .toString()
              .replace(/%VERSION%/g, version)
              .replace(/%TODAY%/g, new Date().toISOString().slice(0, 10)),
        },
        { from: '../README.md', to: '.' },
        { from: 'img/*.svg', to: '.' },
      ],
    }),
  ],
  resolve: { extensions: ['.js', '.jsx', '.ts', '.tsx'] },
  performance: { hints: false },
});
