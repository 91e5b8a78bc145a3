// Package kafkatest runs a real Apache Kafka broker (single-node KRaft, on
// 127.0.0.1) for integration, benchmark and chaos tests, and prepares the
// Python caller used as a foreign client. kfake is the fast in-process
// stand-in; this package is for the tests that must meet the real thing.
//
// No Docker runs on these machines and Debian ships no broker, so the
// broker's jars come from Maven Central through mvn and run on the system
// Java (17).
package kafkatest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"lightning-service/internal/proc"
)

// Version is the Apache Kafka release the tests run against.
const Version = "4.1.1"

// log4jVersion must match the log4j-core that kafka_2.13 depends on: Kafka
// logs through slf4j 1.7, and its pom ships no slf4j binding (the release
// tarball adds log4j-slf4j-impl), so without this jar every broker log line
// is silently dropped.
const log4jVersion = "2.24.3"

// dependencyPluginVersion is pinned because mvn 3.8 otherwise falls back to
// maven-dependency-plugin 2.8 from 2013.
const dependencyPluginVersion = "3.8.1"

// CacheDir is where downloads and virtualenvs are kept between runs:
// $XDG_CACHE_HOME/lightning-service, else ~/.cache/lightning-service.
func CacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("kafkatest: locating the cache directory (set XDG_CACHE_HOME or HOME): %w", err)
	}
	return filepath.Join(base, "lightning-service"), nil
}

// Fetch makes sure the jars of Kafka Version are in the cache and returns
// their directory, for `java -cp '<libDir>/*'`. A cached copy is reused; a
// fresh one is gathered by mvn into a temporary directory and renamed into
// place, so an interrupted fetch never leaves a half-filled cache. Progress
// goes to w.
func Fetch(ctx context.Context, w io.Writer) (libDir string, err error) {
	if w == nil {
		w = io.Discard
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	home := filepath.Join(cache, "kafka-"+Version)
	libDir = filepath.Join(home, "libs")
	if complete(libDir) {
		return libDir, nil
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		return "", fmt.Errorf("kafkatest: fetching Kafka %s needs mvn on PATH (apt-get install maven): %w", Version, err)
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return "", fmt.Errorf("kafkatest: %w", err)
	}
	tmp, err := os.MkdirTemp(home, "fetch-")
	if err != nil {
		return "", fmt.Errorf("kafkatest: %w", err)
	}
	defer os.RemoveAll(tmp)

	pom := filepath.Join(tmp, "pom.xml")
	if err := os.WriteFile(pom, []byte(pomXML), 0o644); err != nil {
		return "", fmt.Errorf("kafkatest: %w", err)
	}
	out := filepath.Join(tmp, "libs")
	fmt.Fprintf(w, "kafkatest: fetching org.apache.kafka:kafka_2.13:%s with mvn into %s\n", Version, libDir)
	start := time.Now()
	var buf bytes.Buffer
	// Quiet mvn prints only errors (and stray colour codes), so its output is
	// kept for the error message rather than streamed.
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-f", pom,
		"dependency:copy-dependencies", "-DincludeScope=runtime", "-DoutputDirectory="+out)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kafkatest: mvn dependency:copy-dependencies for Kafka %s: %w\n%s", Version, err, proc.LastLines(buf.String(), 40))
	}
	if !complete(out) {
		return "", fmt.Errorf("kafkatest: mvn finished but %s lacks kafka_2.13-%s.jar or log4j-slf4j-impl", out, Version)
	}
	// Only a rename fills libDir, so an incomplete one was made by hand.
	if !complete(libDir) {
		os.RemoveAll(libDir)
	}
	if err := os.Rename(out, libDir); err != nil {
		// Another process may have filled the cache meanwhile; theirs is as good.
		if complete(libDir) {
			return libDir, nil
		}
		return "", fmt.Errorf("kafkatest: %w", err)
	}
	fmt.Fprintf(w, "kafkatest: fetched Kafka %s in %s\n", Version, time.Since(start).Round(time.Millisecond))
	return libDir, nil
}

// complete reports whether dir holds the jars that the broker cannot start
// without; the rename makes a directory either whole or absent, this guards
// against a cache written by something else.
func complete(dir string) bool {
	for _, jar := range []string{"kafka_2.13-" + Version + ".jar", "log4j-slf4j-impl-" + log4jVersion + ".jar", "log4j-core-" + log4jVersion + ".jar"} {
		if _, err := os.Stat(filepath.Join(dir, jar)); err != nil {
			return false
		}
	}
	return true
}

var pomXML = `<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>lightning-service</groupId>
  <artifactId>kafkatest-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>` + Version + `</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>` + log4jVersion + `</version>
    </dependency>
  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>` + dependencyPluginVersion + `</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
`
